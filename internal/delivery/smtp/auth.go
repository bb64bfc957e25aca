package smtp

import (
	"errors"
	"fmt"
	"strings"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/smtpclient"
	"moat/internal/maps"
	"moat/internal/sasl"
)

// clientAuth is smtp(8)'s SASL client configuration (postconf(5)
// smtp_sasl_*, Postfix's SASL_README "Enabling SASL authentication in the
// Postfix SMTP/LMTP client"): the password tables stay open for the
// agent's life, opened before any jail as smtpd's are.
type clientAuth struct {
	tables    []maps.Table
	senderDep bool
}

// readAuth builds the session's Auth from smtp_sasl_auth_enable and the
// parameters that go with it; nil when AUTH is off. The tables are opened
// now so that a missing one fails the service at start.
func readAuth(cfg *config.Config, mo maps.Options) (*clientAuth, *smtpclient.Auth, error) {
	on, err := cfg.Bool("smtp_sasl_auth_enable")
	if err != nil {
		return nil, nil, fmt.Errorf("smtp: smtp_sasl_auth_enable: %w", err)
	}
	if !on {
		return nil, nil, nil
	}
	a := &smtpclient.Auth{}
	if a.Plain, err = sasl.ParseSecurityOptions(cfg.Get("smtp_sasl_security_options")); err != nil {
		return nil, nil, fmt.Errorf("smtp: smtp_sasl_security_options: %w", err)
	}
	if a.TLS, err = sasl.ParseSecurityOptions(cfg.Get("smtp_sasl_tls_security_options")); err != nil {
		return nil, nil, fmt.Errorf("smtp: smtp_sasl_tls_security_options: %w", err)
	}
	if a.SoftBounce, err = cfg.Bool("smtp_sasl_auth_soft_bounce"); err != nil {
		return nil, nil, fmt.Errorf("smtp: smtp_sasl_auth_soft_bounce: %w", err)
	}
	if a.Filter, err = mechFilter(cfg.Get("smtp_sasl_mechanism_filter")); err != nil {
		return nil, nil, fmt.Errorf("smtp: smtp_sasl_mechanism_filter: %w", err)
	}
	ca := &clientAuth{}
	if ca.senderDep, err = cfg.Bool("smtp_sender_dependent_authentication"); err != nil {
		return nil, nil, fmt.Errorf("smtp: smtp_sender_dependent_authentication: %w", err)
	}
	names, err := cfg.List("smtp_sasl_password_maps")
	if err != nil {
		return nil, nil, fmt.Errorf("smtp: smtp_sasl_password_maps: %w", err)
	}
	for _, n := range names {
		t, err := maps.Open(n, mo)
		if err != nil {
			ca.close()
			return nil, nil, fmt.Errorf("smtp: smtp_sasl_password_maps: %w", err)
		}
		ca.tables = append(ca.tables, t)
	}
	a.Lookup = ca.lookup
	return ca, a, nil
}

// close closes the password tables.
func (ca *clientAuth) close() error {
	if ca == nil {
		return nil
	}
	var errs []error
	for _, t := range ca.tables {
		errs = append(errs, t.Close())
	}
	return errors.Join(errs...)
}

// find searches the tables in order for key, the first hit winning.
func (ca *clientAuth) find(key string) (string, bool, error) {
	for _, t := range ca.tables {
		v, found, err := t.Lookup(key)
		if err != nil || found {
			return v, found, err
		}
	}
	return "", false, nil
}

// lookupKeys lists the keys smtp_sasl_passwd_lookup() tries, in order:
// with smtp_sender_dependent_authentication the sender address and then
// its @domain (mail_addr_find; the null sender has no entry), then the
// server's host name as the MX record or next hop gave it, then the next
// hop as written ("[host]:port"), and that next hop without its port.
func (ca *clientAuth) lookupKeys(sender, host, nexthop string) []string {
	var keys []string
	if ca.senderDep && sender != "" {
		keys = append(keys, sender)
		if at := strings.LastIndexByte(sender, '@'); at >= 0 && at < len(sender)-1 {
			keys = append(keys, sender[at:])
		}
	}
	keys = append(keys, host)
	nexthop = strings.TrimSpace(nexthop)
	if nexthop != "" && nexthop != host {
		keys = append(keys, nexthop)
		if h, _, ok := strings.Cut(nexthop, "]:"); ok && strings.HasPrefix(nexthop, "[") {
			keys = append(keys, h+"]")
		}
	}
	return keys
}

// lookup is Auth.Lookup: the first key with an entry gives the login.
func (ca *clientAuth) lookup(req *delivery.Request, host string) (user, pass string, found bool, err error) {
	sender := ""
	if req.Envelope != nil {
		sender = req.Envelope.Sender
	}
	for _, k := range ca.lookupKeys(sender, host, req.Nexthop) {
		v, ok, err := ca.find(k)
		if err != nil {
			return "", "", false, err
		}
		if ok {
			user, pass = sasl.ParseClientPassword(strings.TrimSpace(v))
			return user, pass, true, nil
		}
	}
	return "", "", false, nil
}

// mechFilter reads smtp_sasl_mechanism_filter: mechanism names, each
// optionally negated with "!", matched case-insensitively, the first
// match deciding and no match excluding, as Postfix's string_list does;
// empty keeps every mechanism. A static: table matches every name, as in
// postconf(5)'s "!gssapi, !login, static:rest"; other tables and /file
// entries are refused at start rather than ignored.
func mechFilter(v string) (func(string) bool, error) {
	items := config.SplitList(v)
	if len(items) == 0 {
		return nil, nil
	}
	for _, it := range items {
		if strings.ContainsAny(it, ":/") && !strings.HasPrefix(strings.TrimPrefix(it, "!"), "static:") {
			return nil, fmt.Errorf("%q: only mechanism names and static: are supported in this version of moat", it)
		}
	}
	return func(mech string) bool {
		for _, it := range items {
			neg := strings.HasPrefix(it, "!")
			name := strings.TrimPrefix(it, "!")
			if strings.HasPrefix(name, "static:") || strings.EqualFold(name, mech) {
				return !neg
			}
		}
		return false
	}, nil
}
