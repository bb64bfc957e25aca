package smtp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"moat/internal/config"
	"moat/internal/delivery/smtpclient"
	"moat/internal/maps"
	"moat/internal/tlsconf"
)

// tlsPolicy is the agent's outbound TLS: the global settings and the
// per-destination table smtp_tls_policy_maps (TLS_README "TLS policy
// table"), read once at start.
type tlsPolicy struct {
	client *tlsconf.Client
	tables []maps.Table
	// dnssec is smtp_dns_support_level = dnssec, without which the
	// dane levels cannot apply (dane.go).
	dnssec bool
}

// newTLSPolicy reads smtp_tls_* and opens smtp_tls_policy_maps.
func newTLSPolicy(cfg *config.Config, mo maps.Options, warn func(string)) (*tlsPolicy, error) {
	cl, err := tlsconf.NewClient(cfg, warn)
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	p := &tlsPolicy{client: cl}
	if p.dnssec, err = dnssecLevel(cfg); err != nil {
		return nil, err
	}
	specs, err := cfg.List("smtp_tls_policy_maps")
	if err != nil {
		return nil, fmt.Errorf("smtp: smtp_tls_policy_maps: %w", err)
	}
	for _, spec := range specs {
		t, err := maps.Open(spec, mo)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("smtp: smtp_tls_policy_maps: %w", err)
		}
		p.tables = append(p.tables, t)
	}
	return p, nil
}

func (p *tlsPolicy) close() error {
	var errs []error
	for _, t := range p.tables {
		errs = append(errs, t.Close())
	}
	return errors.Join(errs...)
}

// Policy is one smtp_tls_policy_maps entry: a level and its match
// strategies.
type Policy struct {
	Level tlsconf.ClientLevel
	// Match replaces smtp_tls_verify_cert_match or _secure_cert_match
	// when set.
	Match []string
	// explicit says the policy came from smtp_tls_policy_maps, which
	// MTA-STS does not override.
	explicit bool
	// Ignored are attributes moat reads but does not apply (TLS_README:
	// protocols=, ciphers=, exclude= tune OpenSSL; moat keeps the
	// global settings, which never go below its TLS 1.2 floor).
	Ignored []string
}

// errPolicy is a policy entry moat cannot honour; the mail is deferred
// with Postfix's "client TLS configuration problem".
var errPolicy = errors.New("invalid TLS policy")

// ParsePolicy reads an smtp_tls_policy_maps value: "level
// [name=value ...]" (TLS_README). fingerprint, and attributes moat does
// not know, are errors: a destination whose policy cannot be honoured
// waits rather than getting less protection. dane and dane-only are
// decided per MX host from its TLSA records (dane.go).
func ParsePolicy(v string) (Policy, error) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return Policy{}, fmt.Errorf("%w: empty", errPolicy)
	}
	var p Policy
	l, err := tlsconf.ParseClientLevel(f[0])
	if err != nil {
		return p, fmt.Errorf("%w: %v", errPolicy, err)
	}
	p.Level = l
	for _, a := range f[1:] {
		name, val, ok := strings.Cut(a, "=")
		if !ok || val == "" {
			return p, fmt.Errorf("%w: malformed attribute %q", errPolicy, a)
		}
		switch strings.ToLower(name) {
		case "match":
			if p.Level != tlsconf.ClientVerify && p.Level != tlsconf.ClientSecure {
				return p, fmt.Errorf("%w: match= is only for verify and secure", errPolicy)
			}
			p.Match = append(p.Match, tlsconf.SplitMatch(val)...)
		case "protocols", "ciphers", "exclude", "servername", "connection_reuse":
			p.Ignored = append(p.Ignored, strings.ToLower(name))
		default:
			return p, fmt.Errorf("%w: attribute %q not supported", errPolicy, name)
		}
	}
	return p, nil
}

// lookupKeys are the smtp_tls_policy_maps keys for a destination, most
// specific first: the next hop as written ("example.com", "[host]",
// with ":port" when not the default), then for a domain each parent as
// ".parent" (smtp_tls_policy.c tls_policy_lookup).
func lookupKeys(d Destination, defPort int) []string {
	key := strings.ToLower(d.Host)
	if d.NoMX {
		key = "[" + key + "]"
	}
	if d.Port != defPort {
		key += ":" + strconv.Itoa(d.Port)
	}
	keys := []string{key}
	if !d.NoMX && d.Port == defPort {
		h := strings.ToLower(d.Host)
		for {
			i := strings.IndexByte(h, '.')
			if i < 0 || i == len(h)-1 {
				break
			}
			h = h[i+1:]
			keys = append(keys, "."+h)
		}
	}
	return keys
}

// forDest decides one destination's policy: the first table entry for
// its keys, or the global level. A table error or an entry moat cannot
// honour is a reason to defer (dsn, reason).
func (p *tlsPolicy) forDest(d Destination, defPort int, warn func(string)) (pol Policy, dsn, reason string) {
	pol = Policy{Level: p.client.Level}
	for _, key := range lookupKeys(d, defPort) {
		for _, t := range p.tables {
			v, found, err := t.Lookup(key)
			if err != nil {
				warn(fmt.Sprintf("smtp_tls_policy_maps lookup error for %s: %v", key, err))
				return pol, "4.3.0", "TLS policy lookup error for " + key
			}
			if !found {
				continue
			}
			pp, err := ParsePolicy(v)
			if err != nil {
				warn(fmt.Sprintf("smtp_tls_policy_maps, next-hop destination %q: %v", key, err))
				return pol, "4.7.5", "client TLS configuration problem"
			}
			for _, a := range pp.Ignored {
				warn(fmt.Sprintf("smtp_tls_policy_maps, next-hop destination %q: attribute %s= is not applied by moat (global settings used)", key, a))
			}
			pp.explicit = true
			return pp, "", ""
		}
	}
	return pol, "", ""
}

// connPolicy is the TLS policy of one connection to srv of destination d.
func (p *tlsPolicy) connPolicy(pol Policy, d Destination, srv server) *smtpclient.TLSPolicy {
	if pol.Level == tlsconf.ClientNone {
		return nil
	}
	match := pol.Match
	if len(match) == 0 {
		switch pol.Level {
		case tlsconf.ClientVerify:
			match = p.client.VerifyMatch
		case tlsconf.ClientSecure:
			match = p.client.SecureMatch
		}
	}
	return &smtpclient.TLSPolicy{Level: pol.Level, Client: p.client, Match: match, Host: srv.host, Nexthop: d.Host}
}

// tlsFor is the TLS policy of a connection to srv; a dsn says the
// destination's policy cannot be honoured and srv is skipped. The dane
// levels look up srv's TLSA records (dane.go); where neither a policy
// table entry nor DANE decided, the domain's MTA-STS policy may raise
// the level (mtasts.go).
func (a *Agent) tlsFor(ctx context.Context, srv server, sts stsPolicies) (tp *smtpclient.TLSPolicy, dsn, reason string) {
	warn := func(s string) {
		if a.log != nil {
			a.log.Warning("%s", s)
		}
	}
	pol, dsn, reason := a.tls.forDest(srv.dest, a.port, warn)
	if dsn != "" {
		return nil, dsn, reason
	}
	tp = a.tls.connPolicy(pol, srv.dest, srv)
	if pol.Level.DANE() {
		if tp, dsn, reason = a.danePolicy(ctx, pol, srv, warn); dsn != "" || tp != nil && tp.DANE != nil {
			return tp, dsn, reason
		}
	}
	if pol.explicit {
		return tp, "", ""
	}
	return a.stsPolicy(ctx, srv, tp, sts, warn)
}
