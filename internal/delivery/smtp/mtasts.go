package smtp

import (
	"context"
	"fmt"

	"moat/internal/delivery/smtpclient"
	"moat/internal/mtasts"
	"moat/internal/tlsconf"
)

// stsPolicies are the MTA-STS policies (nil: none) one delivery request
// has looked up, by next-hop domain: the TXT lookup, and any warning
// about it, happen once per request, not once per MX address tried.
type stsPolicies map[string]*mtasts.Policy

// stsPolicy applies the next-hop domain's MTA-STS policy (RFC 8461
// section 4, internal/mtasts) to the connection to srv whose TLS policy
// is tp. It is consulted only for a domain whose servers came from its
// MX records (or its implicit MX, section 4.1), never for relayhost or a
// "[host]" next hop, and only where no smtp_tls_policy_maps entry
// decided and DANE did not authenticate the server: an explicit policy is
// the admin's word, and RFC 8461 section 2 lets authenticated DANE take
// precedence.
//
// In mode enforce an MX host the policy does not list is skipped like a
// host whose TLS policy cannot be honoured (4.7.5, nothing sent), and a
// listed one must offer STARTTLS with a certificate that chains to a
// trusted root and names the MX host (level secure, match "hostname";
// section 4.2). In mode testing only the unlisted host is logged (the
// certificate is still checked as tp says; moat does not send TLSRPT
// reports, RFC 8460).
func (a *Agent) stsPolicy(ctx context.Context, srv server, tp *smtpclient.TLSPolicy, sts stsPolicies, warn func(string)) (*smtpclient.TLSPolicy, string, string) {
	if a.sts == nil || !srv.viaMX {
		return tp, "", ""
	}
	domain := srv.dest.Host
	pol, seen := sts[domain]
	if !seen {
		var err error
		if pol, err = a.sts.Lookup(ctx, domain); err != nil {
			warn(fmt.Sprintf("MTA-STS policy for %s: %v", domain, err))
		}
		sts[domain] = pol
	}
	if pol == nil {
		return tp, "", ""
	}
	listed := pol.Match(srv.host)
	if !pol.Enforce() {
		if !listed && a.log != nil {
			a.log.Info("MTA-STS policy (mode testing) for %s does not list MX host %s; delivering as without it", domain, srv.host)
		}
		return tp, "", ""
	}
	if !listed {
		return nil, "4.7.5", fmt.Sprintf("MTA-STS policy for %s does not list MX host %s", domain, srv.host)
	}
	return &smtpclient.TLSPolicy{Level: tlsconf.ClientSecure, Client: a.tls.client,
		Match: []string{"hostname"}, Host: srv.host, Nexthop: domain}, "", ""
}
