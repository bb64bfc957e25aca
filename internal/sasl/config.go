package sasl

import (
	"errors"
	"fmt"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
)

// FromConfig builds the backend a service's parameters name:
// smtpd_sasl_type (dovecot or moat), smtpd_sasl_path for Dovecot,
// smtpd_sasl_password_maps and smtpd_sasl_local_domain for moat's own. The
// tables are opened now, before a daemon enters its jail.
func FromConfig(c *config.Config, mo maps.Options) (Backend, error) {
	typ, err := c.GetErr("smtpd_sasl_type")
	if err != nil {
		return nil, err
	}
	switch strings.TrimSpace(typ) {
	case "dovecot":
		path, err := c.GetErr("smtpd_sasl_path")
		if err != nil {
			return nil, err
		}
		timeout, err := c.Duration("smtpd_timeout")
		if err != nil {
			return nil, err
		}
		return NewDovecot(strings.TrimSpace(path), timeout)
	case "moat":
		names, err := c.List("smtpd_sasl_password_maps")
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			return nil, errors.New("smtpd_sasl_type = moat needs smtpd_sasl_password_maps")
		}
		var ts multiTable
		for _, n := range names {
			t, err := maps.Open(n, mo)
			if err != nil {
				_ = ts.Close()
				return nil, fmt.Errorf("smtpd_sasl_password_maps: %w", err)
			}
			ts = append(ts, t)
		}
		b, err := NewBuiltin(ts, strings.TrimSpace(c.Get("smtpd_sasl_local_domain")), c.Get("myhostname"))
		if err != nil {
			_ = ts.Close()
			return nil, err
		}
		return b, nil
	}
	return nil, fmt.Errorf("unsupported SASL server implementation: %s (smtpd_sasl_type: dovecot or moat)", typ)
}

// multiTable searches several tables in order, the first hit winning, as
// Postfix's lists of tables do.
type multiTable []maps.Table

func (m multiTable) Lookup(key string) (string, bool, error) {
	for _, t := range m {
		v, found, err := t.Lookup(key)
		if err != nil || found {
			return v, found, err
		}
	}
	return "", false, nil
}

func (m multiTable) Pattern() bool { return false }

func (m multiTable) Close() error {
	var errs []error
	for _, t := range m {
		errs = append(errs, t.Close())
	}
	return errors.Join(errs...)
}
