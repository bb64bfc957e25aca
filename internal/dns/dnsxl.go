package dns

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Listing is the answer of a DNS white/black list query.
type Listing struct {
	// Listed is true when an A record passed the filter.
	Listed bool
	// Addr is the first A record that passed (Postfix's $rbl_code source).
	Addr string
	// TXT is the list's TXT reason, fetched only when Listed, its records
	// joined with spaces ("" when there is none).
	TXT string
	// Status is the A lookup's status: OK (listed or not), NotFound or
	// Fail (not listed), Retry, Invalid or Policy (lookup error: Postfix
	// logs it and does not reject, and permit_dnswl_client then gives
	// DEFER_IF_REJECT).
	Status Status
	// Why explains a lookup error in dns_lookup's words, for the
	// "query: RBL lookup error: Why" warning.
	Why string
}

// Listed asks a DNS list about query (already built with ReverseQuery or
// as "name.domain") and applies filter, the "=d.d.d.d" part of
// reject_rbl_client and friends (postconf(5)): each of the four parts is a
// number, or "[...]" with ";"-separated numbers and "n..m" ranges. moat
// also accepts "&d.d.d.d", listed when an address shares a bit with the
// mask (the bitmask form some lists document; Postfix 3.7 does not).
// An empty filter accepts any A record. A filter that does not parse is
// reported as Invalid and lists nothing.
func (s *Session) Listed(ctx context.Context, query, filter string) Listing {
	var f *AddrFilter
	if filter != "" {
		var err error
		if f, err = ParseFilter(filter); err != nil {
			s.r.warn(fmt.Sprintf("%s: %v", query, err))
			return Listing{Status: Invalid, Why: err.Error()}
		}
	}
	res := s.Lookup(ctx, query, A)
	l := Listing{Status: res.Status}
	switch res.Status {
	case OK:
	case NotFound, Fail:
		return l
	default:
		l.Why = res.Why
		return l
	}
	for _, x := range res.RRs {
		a, err := netip.ParseAddr(x.Value)
		if err != nil || !a.Is4() {
			continue
		}
		if f == nil || f.Match(a) {
			l.Listed, l.Addr = true, x.Value
			break
		}
	}
	if !l.Listed {
		return l
	}
	txt := s.Lookup(ctx, query, TXT)
	switch txt.Status {
	case OK:
		parts := make([]string, 0, len(txt.RRs))
		for _, x := range txt.RRs {
			parts = append(parts, x.Value)
		}
		l.TXT = strings.Join(parts, " ")
	case Policy, Retry, Invalid:
		s.r.warn(fmt.Sprintf("%s: TXT lookup error: %s", query, txt.Reason))
	}
	return l
}

// AddrFilter is a parsed DNS list reply filter.
type AddrFilter struct {
	mask   bool
	bits   [4]byte
	octets [4][]octetRange
}

type octetRange struct{ lo, hi int }

// ParseFilter parses a DNS list reply filter: "d.d.d.d" where each d is a
// number 0..255 or "[" ";"-separated numbers and "n..m" ranges "]"
// (postconf(5) reject_rbl_client, postscreen_dnsbl_sites), or moat's
// "&d.d.d.d" bitmask.
func ParseFilter(s string) (*AddrFilter, error) {
	f := &AddrFilter{}
	if rest, ok := strings.CutPrefix(s, "&"); ok {
		a, err := netip.ParseAddr(rest)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("bad DNS list reply mask %q", s)
		}
		f.mask, f.bits = true, a.As4()
		return f, nil
	}
	parts, err := splitOctets(s)
	if err != nil {
		return nil, err
	}
	for i, p := range parts {
		if inner, ok := strings.CutPrefix(p, "["); ok {
			inner, ok = strings.CutSuffix(inner, "]")
			if !ok || inner == "" {
				return nil, fmt.Errorf("bad DNS list reply filter %q: %q", s, p)
			}
			for item := range strings.SplitSeq(inner, ";") {
				lo, hi, isRange := strings.Cut(item, "..")
				a, err := octet(lo)
				if err != nil {
					return nil, fmt.Errorf("bad DNS list reply filter %q: %w", s, err)
				}
				b := a
				if isRange {
					if b, err = octet(hi); err != nil {
						return nil, fmt.Errorf("bad DNS list reply filter %q: %w", s, err)
					}
					if b < a {
						return nil, fmt.Errorf("bad DNS list reply filter %q: range %s is backwards", s, item)
					}
				}
				f.octets[i] = append(f.octets[i], octetRange{a, b})
			}
			continue
		}
		n, err := octet(p)
		if err != nil {
			return nil, fmt.Errorf("bad DNS list reply filter %q: %w", s, err)
		}
		f.octets[i] = []octetRange{{n, n}}
	}
	return f, nil
}

// splitOctets splits on the dots outside brackets, so "[1..3]" stays whole.
func splitOctets(s string) ([]string, error) {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
			if depth > 1 {
				return nil, fmt.Errorf("bad DNS list reply filter %q: nested [", s)
			}
		case ']':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("bad DNS list reply filter %q: unbalanced ]", s)
			}
		case '.':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("bad DNS list reply filter %q: missing ]", s)
	}
	parts = append(parts, s[start:])
	if len(parts) != 4 {
		return nil, fmt.Errorf("bad DNS list reply filter %q: want four parts d.d.d.d", s)
	}
	return parts, nil
}

// octet parses one decimal number 0..255 (no sign, no spaces).
func octet(s string) (int, error) {
	if s == "" || len(s) > 3 {
		return 0, fmt.Errorf("bad number %q", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	n, _ := strconv.Atoi(s)
	if n > 255 {
		return 0, fmt.Errorf("number %q out of range", s)
	}
	return n, nil
}

// Match reports whether the IPv4 address a passes the filter.
func (f *AddrFilter) Match(a netip.Addr) bool {
	a = a.Unmap()
	if !a.Is4() {
		return false
	}
	b := a.As4()
	if f.mask {
		for i := range b {
			if b[i]&f.bits[i] != 0 {
				return true
			}
		}
		return false
	}
	for i, rs := range f.octets {
		ok := false
		for _, r := range rs {
			if int(b[i]) >= r.lo && int(b[i]) <= r.hi {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
