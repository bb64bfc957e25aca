package smtpd

import (
	"fmt"
	"net/netip"
	"strings"

	"moat/internal/config"
)

// netList is a stand-in for Postfix's match lists (postconf(5) "mynetworks",
// debug_peer_list) while internal/matchlist is being written: it matches
// client addresses against address and CIDR entries, the forms mynetworks
// holds. Other entries (host names, domains, /file, type:table) are kept in
// skipped and never match; New reports them. It is used behind match alone,
// so the real match list replaces it in one place.
type netList struct {
	prefixes []netip.Prefix
	skipped  []string
}

func newNetList(c *config.Config, param string) (*netList, error) {
	words, err := c.List(param)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", param, err)
	}
	l := &netList{}
	for _, w := range words {
		neg := strings.HasPrefix(w, "!")
		if p, ok := parseNetEntry(strings.TrimPrefix(w, "!")); ok && !neg {
			l.prefixes = append(l.prefixes, p)
			continue
		}
		// A negated entry cannot be honoured without the full match
		// list semantics; skipping it could only widen a match, so it
		// is skipped together with everything after it.
		if neg {
			l.skipped = append(l.skipped, w)
			break
		}
		l.skipped = append(l.skipped, w)
	}
	return l, nil
}

// parseNetEntry reads "192.0.2.0/24", "192.0.2.1", "[2001:db8::]/32" or
// "[2001:db8::1]", as Postfix writes networks in mynetworks.
func parseNetEntry(w string) (netip.Prefix, bool) {
	addr, bits, hasBits := strings.Cut(w, "/")
	if strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") {
		addr = addr[1 : len(addr)-1]
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	if !hasBits {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(a.String() + "/" + bits)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

func (l *netList) match(a netip.Addr) bool {
	if l == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range l.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
