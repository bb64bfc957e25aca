package matchlist

import (
	"fmt"
	"net/netip"
	"strings"
)

// LookupError is a table that failed while a list was being matched.
// Postfix treats it as a temporary error (the list neither matches nor
// fails to match), and so must callers: smtpd answers 451 4.3.0.
type LookupError struct {
	Origin string // the list's parameter
	Table  string // type:name
	Err    error  // the table's own error
}

// Error reads as Postfix's warning, "mynetworks: cidr:/x: table lookup
// problem", followed by the table's reason.
func (e *LookupError) Error() string {
	return fmt.Sprintf("%s: %s: table lookup problem: %v", e.Origin, e.Table, e.Err)
}

// Unwrap gives the table's error.
func (e *LookupError) Unwrap() error { return e.Err }

// Match reports whether the list matches. For a Host list, name is the
// client's host name ("unknown" or "" when it has none: neither matches a
// name pattern) and addr its address; each pattern is tried against the
// name, then the address, and the first pattern that matches decides,
// negated ones with false (match_list(3)). Domain and String lists look at
// name only, Addr lists at addr only. An IPv4-mapped IPv6 address is matched
// in its IPv4 form, as Postfix's smtpd records such a client. A non-nil
// error is a table lookup failure (*LookupError).
func (l *List) Match(name string, addr netip.Addr) (bool, error) {
	useName := l.kind != Addr
	useAddr := (l.kind == Host || l.kind == Addr) && addr.IsValid()
	if useName {
		name = l.fold(name)
	}
	var addrText string
	if useAddr {
		addr = addr.Unmap().WithZone("")
		addrText = addr.String()
	}
	for i := range l.pats {
		p := &l.pats[i]
		if useName {
			ok, err := l.matchName(p, name)
			if err != nil {
				return false, err
			}
			if ok {
				return !p.negate, nil
			}
		}
		if useAddr {
			ok, err := l.matchAddr(p, addr, addrText)
			if err != nil {
				return false, err
			}
			if ok {
				return !p.negate, nil
			}
		}
	}
	return false, nil
}

// MatchDomain matches a host or domain name alone (relay_domains,
// mydestination); for a Host list it is Match without an address.
func (l *List) MatchDomain(domain string) (bool, error) {
	return l.Match(domain, netip.Addr{})
}

// matchName is match_hostname() for Host and Domain lists and
// match_string() for String lists.
func (l *List) matchName(p *pattern, name string) (bool, error) {
	if p.table != nil {
		return l.lookupName(p, name)
	}
	if name == p.text {
		return true, nil
	}
	if l.kind == String {
		return false, nil
	}
	// Postfix's parent-domain test: with parent matching, "example.com"
	// matches "x.example.com"; without it only ".example.com" does.
	// (With parent matching on, ".example.com" needs a name ending in
	// "..example.com" and so matches nothing, as in Postfix.)
	n := len(name) - len(p.text)
	if n <= 0 || name[n:] != p.text {
		return false, nil
	}
	if l.parent {
		return name[n-1] == '.', nil
	}
	return p.text[0] == '.', nil
}

// lookupName asks a table for name. A fixed-key table of a Host or Domain
// list is also asked for the parent domains: "b.c" and "c" with parent
// matching, ".b.c" and ".c" without; a pattern table (regexp, pcre, cidr)
// sees the whole name only.
func (l *List) lookupName(p *pattern, name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	keys := []string{name}
	if l.kind != String && !p.table.Pattern() {
		for i := 1; i < len(name); i++ {
			if name[i] != '.' {
				continue
			}
			if l.parent {
				if i+1 < len(name) {
					keys = append(keys, name[i+1:])
				}
			} else {
				keys = append(keys, name[i:])
			}
		}
	}
	for _, k := range keys {
		_, found, err := p.table.Lookup(k)
		if err != nil {
			return false, &LookupError{Origin: l.origin, Table: p.spec, Err: err}
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

// matchAddr is match_hostaddr(): a table is asked for the address text;
// otherwise the text must equal the pattern, bare or in brackets, or fall in
// the pattern's network (same family only).
func (l *List) matchAddr(p *pattern, addr netip.Addr, text string) (bool, error) {
	if p.table != nil {
		_, found, err := p.table.Lookup(text)
		if err != nil {
			return false, &LookupError{Origin: l.origin, Table: p.spec, Err: err}
		}
		return found, nil
	}
	if p.text == text || (strings.HasPrefix(p.text, "[") && p.text == "["+text+"]") {
		return true, nil
	}
	if !p.hasCIDR || p.v6 != addr.Is6() {
		return false, nil
	}
	return p.cidr.Contains(addr), nil
}
