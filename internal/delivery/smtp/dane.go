package smtp

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"moat/internal/config"
	"moat/internal/delivery/smtpclient"
	"moat/internal/dns"
	"moat/internal/maps"
	"moat/internal/tlsconf"
)

// dnssecLevel reads smtp_dns_support_level (postconf(5)): only "dnssec"
// makes the resolver ask for validated answers, which the dane levels
// need; "", "enabled" and "disabled" do not (moat always uses DNS).
func dnssecLevel(cfg *config.Config) (bool, error) {
	switch v := strings.ToLower(strings.TrimSpace(cfg.Get("smtp_dns_support_level"))); v {
	case "dnssec":
		return true, nil
	case "", "enabled", "disabled":
		return false, nil
	default:
		return false, fmt.Errorf("smtp: smtp_dns_support_level: invalid value %q (disabled, enabled or dnssec)", v)
	}
}

// newResolver is dns.FromConfig with DNSSEC on when
// smtp_dns_support_level = dnssec.
func newResolver(cfg *config.Config, mo maps.Options, warn func(string)) (*dns.Resolver, error) {
	sec, err := dnssecLevel(cfg)
	if err != nil {
		return nil, err
	}
	o, err := dns.OptionsFromConfig(cfg, mo, warn)
	if err != nil {
		return nil, err
	}
	o.DNSSEC = sec
	r, err := dns.New(o)
	if err != nil && o.ReplyFilter != nil {
		o.ReplyFilter.Close()
	}
	return r, err
}

// Why DANE does not apply to a server, as smtp_tls_policy.c sorts it:
// the administrator's configuration, the destination (no secure TLSA
// records), or TLSA records that exist but none of which is usable.
const (
	nonDANEConfig = iota
	nonDANEDest
	daneUnusable
)

// danePolicy decides a dane or dane-only destination's connection to srv
// as Postfix's smtp_tls_policy.c dane_init does (RFC 7672 section 2.2):
// without DNSSEC lookups dane is may (with a warning) and dane-only a
// configuration problem; an insecure MX answer or host address, or no
// authentic TLSA records, make dane may and defer dane-only; a failed
// TLSA lookup defers (4.7.5) whatever the level, never sending in clear;
// TLSA records of which none is usable make dane encrypt. Otherwise the
// connection is authenticated by its TLSA records.
func (a *Agent) danePolicy(ctx context.Context, pol Policy, srv server, warn func(string)) (*smtpclient.TLSPolicy, string, string) {
	dest := srv.dest.Host
	if srv.dest.NoMX {
		dest = "[" + dest + "]"
	}
	if srv.dest.Port != a.port {
		dest += ":" + strconv.Itoa(srv.dest.Port)
	}
	incompat := func(kind int, why string) (*smtpclient.TLSPolicy, string, string) {
		if pol.Level == tlsconf.ClientDane {
			if kind == nonDANEConfig {
				warn(why)
			}
			pol.Level = tlsconf.ClientMay
			if kind == daneUnusable {
				pol.Level = tlsconf.ClientEncrypt
			}
			return a.tls.connPolicy(pol, srv.dest, srv), "", ""
		}
		if kind == nonDANEConfig {
			warn(why)
			return nil, "4.7.5", "client TLS configuration problem"
		}
		return nil, "4.7.5", why
	}
	if !a.tls.dnssec {
		return incompat(nonDANEConfig, fmt.Sprintf("%s: %s configured with dnssec lookups disabled", dest, pol.Level))
	}
	if srv.viaMX && !srv.mxSecure {
		return incompat(nonDANEDest, "non DNSSEC destination")
	}
	if !srv.addrSecure || srv.sess == nil {
		// tls_dane_resolve asks for TLSA records only of a host
		// whose addresses were authentic.
		return incompat(nonDANEDest, "no TLSA records found")
	}
	res := srv.sess.Lookup(ctx, fmt.Sprintf("_%d._tcp.%s", srv.port, srv.host), dns.TLSA)
	switch res.Status {
	case dns.OK:
		if !res.Authentic {
			return incompat(nonDANEDest, "no TLSA records found")
		}
	case dns.NotFound, dns.Fail:
		return incompat(nonDANEDest, "no TLSA records found")
	default:
		return nil, "4.7.5", fmt.Sprintf("TLSA lookup error for %s:%d", srv.host, srv.port)
	}
	d := tlsconf.NewDANE(tlsaRecords(res.RRs), srv.host, srv.dest.Host)
	if d == nil {
		return incompat(daneUnusable, "TLSA records unusable")
	}
	return &smtpclient.TLSPolicy{Level: tlsconf.ClientDane, Client: a.tls.client, Host: srv.host, Nexthop: srv.dest.Host, DANE: d}, "", ""
}

// tlsaRecords converts the resolver's TLSA records; one whose data is not
// hex (which the resolver never gives) is left out, as unusable.
func tlsaRecords(rrs []dns.RR) []tlsconf.TLSA {
	var out []tlsconf.TLSA
	for _, rr := range rrs {
		if rr.Type != dns.TLSA {
			continue
		}
		data, err := hex.DecodeString(rr.Value)
		if err != nil {
			continue
		}
		out = append(out, tlsconf.TLSA{Usage: rr.Usage, Selector: rr.Selector, Matching: rr.Matching, Data: data})
	}
	return out
}
