package matchlist

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"moat/internal/maps"
)

// compile reads one string pattern (neither a file nor a table) for the
// list's kind. Patterns are casefolded once here, as match_list_init does,
// and looked-up names are folded the same way at match time.
func (l *List) compile(item string) (pattern, error) {
	p := pattern{text: l.fold(item)}
	if l.kind != Host && l.kind != Addr {
		return p, nil
	}
	if addressLike(p.text) {
		prefix, err := parseCIDR(p.text)
		if err != nil {
			return p, fmt.Errorf("%s: %s", l.origin, err)
		}
		p.cidr, p.hasCIDR, p.v6 = prefix, true, strings.Contains(p.text, ":")
		return p, nil
	}
	if strings.Trim(p.text, "0123456789.") == "" {
		// All digits and dots: no host name looks like this (valid_hostname
		// refuses it), so it is meant as an IPv4 address. Postfix compares
		// it as text, so "192.168.10" (access(5)'s partial-network form)
		// silently matches nothing, and "!192.168.10" excludes nothing.
		if a, err := netip.ParseAddr(p.text); err != nil || !a.Is4() {
			return p, fmt.Errorf("%s: bad address pattern: %q (a network is written as address/length, e.g. 192.168.10.0/24)", l.origin, item)
		}
		return p, nil
	}
	if l.kind == Addr {
		// An addr_list compares addresses only; Postfix silently never
		// matches a name here, which hides a typo in an address list.
		return p, fmt.Errorf("%s: bad address pattern: %q", l.origin, item)
	}
	return p, nil
}

// fold casefolds a pattern or a name to be matched: Unicode case folding
// when smtputf8 is on, except for text that is not valid UTF-8, which is
// folded as ASCII so that distinct invalid bytes stay distinct (Unicode
// folding would turn them all into U+FFFD and make them equal).
func (l *List) fold(s string) string {
	return maps.FoldKey(s, l.utf8 && utf8.ValidString(s))
}

// addressLike says which patterns are read as addresses or networks.
// Postfix's match_hostaddr() sends to cidr_match_parse() a pattern with ":"
// or "/", not all IPv4 characters, made only of address characters and
// "[]/"; anything else it compares as text, so "[1.2.3.4" or "10.0.0.0/-8"
// silently never match ("principle of least astonishment", match_ops.c).
// No host name starts with "[" or contains "/", so moat reads every such
// pattern as an address and refuses the ones that are not. Postfix applies
// its gate per lookup, for an address of the pattern's family only; moat
// applies it once, at parse time, so a bad network is reported when the
// list is read.
func addressLike(p string) bool {
	// A pattern with ":" and no leading "[" is a table (isTable), so a
	// leading "[" or a "/" is all that is left to test.
	return strings.HasPrefix(p, "[") || strings.Contains(p, "/")
}

// parseCIDR is Postfix 3.7's cidr_match_parse(): "addr", "addr/len",
// "[addr]", "[addr]/len" or "[addr/len]", with its diagnostics word for word
// (the namadr_list test vectors check them). The family is IPv6 when the
// address has a colon, IPv4 otherwise, and a network must have no host bits
// set (cidr_table(5)).
func parseCIDR(pattern string) (netip.Prefix, error) {
	addr, rest := pattern, ""
	if strings.HasPrefix(pattern, "[") {
		inner := pattern[1:]
		end := strings.IndexByte(inner, ']')
		if end < 0 {
			return netip.Prefix{}, fmt.Errorf("missing ']' character after \"[%s\"", inner)
		}
		addr, rest = inner[:end], inner[end+1:]
		if rest != "" && rest[0] != '/' {
			return netip.Prefix{}, fmt.Errorf("garbage after \"[%s]\"", addr)
		}
		if rest == "" {
			// "[addr/len]": the mask is looked for inside the brackets.
			rest = addr
			addr = ""
		}
	} else {
		rest = pattern
		addr = ""
	}
	// Split at the first "/" of whichever part holds the mask.
	if addr == "" {
		addr = rest
		rest = ""
		if i := strings.IndexByte(addr, '/'); i >= 0 {
			addr, rest = addr[:i], addr[i:]
		}
	}
	v6 := strings.Contains(addr, ":")
	bits := 32
	if v6 {
		bits = 128
	}
	if rest == "" {
		a, ok := parseAddr(addr, v6)
		if !ok {
			return netip.Prefix{}, fmt.Errorf("bad address pattern: %q", addr)
		}
		return netip.PrefixFrom(a, bits), nil
	}
	mask := rest[1:]
	if mask == "" || strings.Trim(mask, "0123456789") != "" {
		return netip.Prefix{}, fmt.Errorf("bad mask value in \"%s/%s\"", addr, mask)
	}
	n, err := strconv.Atoi(mask)
	if err != nil || n > bits {
		return netip.Prefix{}, fmt.Errorf("bad mask length in \"%s/%s\"", addr, mask)
	}
	a, ok := parseAddr(addr, v6)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("bad network value in \"%s/%s\"", addr, mask)
	}
	prefix := netip.PrefixFrom(a, n)
	if masked := prefix.Masked(); masked.Addr() != a {
		return netip.Prefix{}, fmt.Errorf("non-null host address bits in \"%s/%s\", perhaps you should use \"%s/%d\" instead",
			addr, mask, masked.Addr(), n)
	}
	return prefix, nil
}

// parseAddr is inet_pton() for the family the text was written in: dotted
// quad for IPv4, RFC 4291 text for IPv6 (an IPv4-mapped form stays IPv6),
// no zone index.
func parseAddr(s string, v6 bool) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	if v6 != a.Is6() {
		return netip.Addr{}, false
	}
	return a, true
}
