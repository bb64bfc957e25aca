package rewrite

import (
	"fmt"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/matchlist"
)

// masq is address masquerading (postconf(5) masquerade_domains,
// masquerade_exceptions, masquerade_classes; ADDRESS_REWRITING_README
// "Address masquerading"): user@host.sub.example.com becomes
// user@example.com, so that a gateway's users share one domain. cleanup(8)
// applies it after the canonical maps.
type masq struct {
	domains      []string // in order; a leading "!" (toggled per "!") keeps the domain
	exceptions   *matchlist.List
	sender, rcpt bool // envelope_sender, envelope_recipient classes
	// header_sender, header_recipient classes
	hdrSender, hdrRcpt bool
}

func openMasq(cfg *config.Config, opts maps.Options) (*masq, error) {
	m := &masq{}
	var err error
	if m.domains, err = cfg.List("masquerade_domains"); err != nil {
		return nil, fmt.Errorf("masquerade_domains: %w", err)
	}
	c, err := readClasses(cfg, "masquerade_classes")
	if err != nil {
		return nil, err
	}
	m.sender, m.rcpt, m.hdrSender, m.hdrRcpt = c.envFrom, c.envTo, c.hdrFrom, c.hdrTo
	if len(m.domains) == 0 {
		return m, nil
	}
	if m.exceptions, err = matchlist.New(cfg, "masquerade_exceptions", matchlist.String, opts); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *masq) close() error {
	if m == nil || m.exceptions == nil {
		return nil
	}
	return m.exceptions.Close()
}

// apply is cleanup_masquerade_internal(): the first masquerade domain that
// is the address's domain or a parent of it decides — a parent replaces
// the domain, the domain itself or a "!" entry leaves it. A user listed in
// masquerade_exceptions is left alone; a failing exceptions table is a
// temporary error.
func (m *masq) apply(addr string) (string, error) {
	if m == nil || len(m.domains) == 0 {
		return addr, nil
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr, nil
	}
	if !m.exceptions.Empty() {
		ok, err := m.exceptions.MatchDomain(addr[:at])
		if err != nil {
			return addr, &Error{Msg: "masquerade_exceptions map lookup problem -- message not accepted, try again later", Err: err}
		}
		if ok {
			return addr, nil
		}
	}
	domain := addr[at+1:]
	for _, d := range m.domains {
		keep := false
		for strings.HasPrefix(d, "!") {
			d, keep = d[1:], !keep
		}
		switch {
		case d == "":
			continue
		case len(d) == len(domain):
			if strings.EqualFold(d, domain) {
				return addr, nil
			}
		case len(d) < len(domain):
			parent := domain[len(domain)-len(d):]
			if domain[len(domain)-len(d)-1] == '.' && strings.EqualFold(d, parent) {
				if keep {
					return addr, nil
				}
				return addr[:at+1] + strings.ToLower(d), nil
			}
		}
	}
	return addr, nil
}
