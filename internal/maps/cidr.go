package maps

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// cidr_table(5): "network/prefix result", a bare address (a /32 or
// /128 network), "!" negation, and "if PATTERN" ... "endif" blocks. A key
// is compared only with rules of its own family, decided as Postfix does
// by whether it contains a colon: "::ffff:1.2.3.4" is an IPv6 key and does
// not match 1.2.3.0/24 (smtpd strips the ::ffff: prefix from client
// addresses before it looks them up, so callers see IPv4 keys). A key that
// is not an address matches nothing, negated rules included.

type cidrRule struct {
	op      int // opMatch, opIf, opEndif
	nesting int
	prefix  netip.Prefix
	match   bool // false for "!" rules
	value   string
}

// cidrTable is an open cidr: table.
type cidrTable struct {
	rules []cidrRule
	patternBase
}

// Lookup returns the value of the first rule whose network contains key,
// honouring negation and IF/ENDIF blocks.
func (t *cidrTable) Lookup(key string) (string, bool, error) {
	if !t.keyCheck.ok(key) {
		return "", false, nil
	}
	addr, ok := parseCIDRKey(key)
	if !ok {
		return "", false, nil
	}
	nesting := 0
	for i := range t.rules {
		r := &t.rules[i]
		if nesting < r.nesting {
			continue
		}
		switch r.op {
		case opEndif:
			nesting--
		case opIf:
			if r.prefix.Addr().Is4() == addr.Is4() && r.prefix.Contains(addr) == r.match {
				nesting++
			}
		case opMatch:
			if r.prefix.Addr().Is4() == addr.Is4() && r.prefix.Contains(addr) == r.match {
				return r.value, true, nil
			}
		}
	}
	return "", false, nil
}

// parseCIDRKey parses an address the way inet_pton(3) does for the family
// Postfix picks from the presence of a colon: no zones, no brackets, no
// leading zeros in IPv4 octets.
func parseCIDRKey(s string) (netip.Addr, bool) {
	if strings.ContainsAny(s, "%[]") {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	if strings.IndexByte(s, ':') >= 0 {
		if a.Is4() {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16(a.As16()), true
	}
	if !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}

// parseCIDRPattern parses "addr", "addr/len", "[addr]", "[addr]/len" or
// "[addr/len]", returning Postfix's complaint when it is not a valid
// network with zero host bits.
func parseCIDRPattern(pattern string) (netip.Prefix, string) {
	maskSearch := pattern
	if strings.HasPrefix(pattern, "[") {
		inner := pattern[1:]
		k := strings.IndexByte(inner, ']')
		if k < 0 {
			return netip.Prefix{}, fmt.Sprintf("missing ']' character after \"[%s\"", inner)
		}
		after := inner[k+1:]
		if after != "" && after[0] != '/' {
			return netip.Prefix{}, fmt.Sprintf("garbage after \"[%s]\"", inner[:k])
		}
		pattern = inner[:k] + after
		maskSearch = pattern
	}
	addrText, mask, hasMask := strings.Cut(maskSearch, "/")
	bits := 32
	if strings.IndexByte(addrText, ':') >= 0 {
		bits = 128
	}
	if !hasMask {
		a, ok := parseCIDRKey(addrText)
		if !ok {
			return netip.Prefix{}, fmt.Sprintf("bad address pattern: \"%s\"", pattern)
		}
		return netip.PrefixFrom(a, bits), ""
	}
	if mask == "" || !reAllDigits(mask) {
		return netip.Prefix{}, fmt.Sprintf("bad mask value in \"%s/%s\"", addrText, mask)
	}
	n, err := strconv.Atoi(mask)
	if err != nil || n > bits {
		return netip.Prefix{}, fmt.Sprintf("bad mask length in \"%s/%s\"", addrText, mask)
	}
	a, ok := parseCIDRKey(addrText)
	if !ok {
		return netip.Prefix{}, fmt.Sprintf("bad network value in \"%s/%s\"", addrText, mask)
	}
	p := netip.PrefixFrom(a, n)
	if p.Masked().Addr() != a {
		return netip.Prefix{}, fmt.Sprintf("non-null host address bits in \"%s/%s\", perhaps you should use \"%s/%d\" instead",
			addrText, mask, ntop(p.Masked().Addr()), n)
	}
	return p, ""
}

// ntop formats an address as glibc's inet_ntop(3) does, which differs
// from Go for IPv4-compatible IPv6 addresses ("::1.2.3.4").
func ntop(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		b := a.As16()
		zero := true
		for _, x := range b[:12] {
			zero = zero && x == 0
		}
		if zero && (b[12] != 0 || b[13] != 0) {
			return "::" + netip.AddrFrom4([4]byte(b[12:16])).String()
		}
	}
	return a.String()
}

// ParseCIDRTable parses cidr_table(5) source text (for tests, fuzzing and
// tools that already hold the bytes). name is used in messages.
func ParseCIDRTable(name string, data []byte) (Table, error) {
	return parseCIDRSource(name, data), nil
}

func parseCIDRSource(name string, data []byte) *cidrTable {
	t := &cidrTable{}
	warn := func(line int, format string, args ...any) {
		t.warnings = append(t.warnings, fmt.Sprintf("cidr map %s, line %d: ", name, line)+fmt.Sprintf(format, args...))
	}
	var ifs ifStack
	for _, ll := range readLogicalLines(name, data, func(s string) { t.warnings = append(t.warnings, s) }) {
		s := strings.TrimRight(ll.Text, " \t\r\n\f\v")
		r, why := parseCIDRLine(s, ifs.depth())
		if why != "" {
			warn(ll.Num, "%s: skipping this rule", why)
			continue
		}
		ifs.track(r.op, ll.Num)
		t.rules = append(t.rules, r)
	}
	for _, line := range ifs.unclosed() {
		warn(line, "IF has no matching ENDIF")
	}
	return t
}

// keyword reports whether s starts with the word kw (any case) followed
// by whitespace or the end of the line.
func cidrKeyword(s, kw string) bool {
	return len(s) >= len(kw) && strings.EqualFold(s[:len(kw)], kw) && (len(s) == len(kw) || reIsSpace(s[len(kw)]))
}

func parseCIDRLine(s string, nesting int) (cidrRule, string) {
	switch {
	case cidrKeyword(s, "endif"):
		if reSkipSpace(s[5:]) != "" {
			return cidrRule{}, "garbage after ENDIF"
		}
		if nesting == 0 {
			return cidrRule{}, "ENDIF without IF"
		}
		return cidrRule{op: opEndif, nesting: nesting}, ""
	case cidrKeyword(s, "if"):
		match, rest := cidrNegation(reSkipSpace(s[2:]))
		if rest == "" {
			return cidrRule{}, "no address pattern"
		}
		p, why := parseCIDRPattern(rest)
		if why != "" {
			return cidrRule{}, why
		}
		return cidrRule{op: opIf, nesting: nesting, prefix: p, match: match}, ""
	}
	match, rest := cidrNegation(s)
	pattern := rest
	value := ""
	if k := strings.IndexAny(rest, " \t\r\n\f\v"); k >= 0 {
		pattern, value = rest[:k], reSkipSpace(rest[k:])
	}
	if pattern == "" {
		return cidrRule{}, "no address pattern"
	}
	// Postfix judges the pattern before it misses the result.
	p, why := parseCIDRPattern(pattern)
	if why != "" {
		return cidrRule{}, why
	}
	if value == "" {
		return cidrRule{}, "no lookup result"
	}
	return cidrRule{op: opMatch, nesting: nesting, prefix: p, match: match, value: value}, ""
}

func cidrNegation(s string) (bool, string) {
	match := true
	for len(s) > 0 && s[0] == '!' {
		match = !match
		s = reSkipSpace(s[1:])
	}
	return match, s
}

// openCIDR opens a cidr_table(5) file.
func openCIDR(name string, opts Options) (Table, error) {
	data, err := patternSource("cidr", name, opts)
	if err != nil {
		return nil, err
	}
	t := parseCIDRSource(name, data)
	t.finishOpen("cidr:"+name, opts)
	return t, nil
}
