package hostname

import "strings"

// maxAddrText is the longest address text inside a literal, Postfix's
// MAI_HOSTADDR_STRSIZE (INET6_ADDRSTRLEN, 46, counting the NUL).
const maxAddrText = 46

// CheckMailAddr reports whether addr is the inside of an RFC 5321
// section 4.1.3 address literal: a dotted quad, or "IPv6:" (any case)
// followed by an IPv6 address. It returns the bare address (without the
// tag) when valid. This is Postfix's valid_mailhost_addr().
func CheckMailAddr(addr string) (string, error) {
	if len(addr) >= 5 && strings.EqualFold(addr[:5], "IPv6:") {
		bare := addr[5:]
		return bare, CheckIPv6(bare)
	}
	return addr, CheckIPv4(addr)
}

// CheckMailLiteral reports whether s is an address literal as it appears
// in HELO/EHLO and in the domain of an envelope address: "[1.2.3.4]" or
// "[IPv6:2001:db8::1]". reject_invalid_helo_hostname uses it for names
// that start with "[". This is Postfix's valid_mailhost_literal().
func CheckMailLiteral(s string) error {
	const fn = "valid_mailhost_literal"
	if !strings.HasPrefix(s, "[") {
		return fail(fn, "'[' expected at start: %s", clip(s))
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return fail(fn, "']' expected at end: %s", clip(s))
	}
	if end+1 != len(s) {
		return fail(fn, "unexpected text after ']': %s", clip(s))
	}
	if end-1 >= maxAddrText {
		return fail(fn, "too much text: %s", clip(s))
	}
	_, err := CheckMailAddr(s[1:end])
	return err
}
