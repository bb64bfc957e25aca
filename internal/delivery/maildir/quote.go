package maildir

import "strings"

// quoteAddr renders an internal-form address for a header, quoting the
// local part when it is not an RFC 5322 dot-atom (section 3.4.1), as
// Postfix's quote_822_local() does for the delivery headers. CR, LF and NUL
// cannot occur in an SMTP envelope address; if one ever does, it becomes
// '?' so that an address can never start a header of its own.
func quoteAddr(addr string) string {
	local, domain := addr, ""
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local, domain = addr[:at], addr[at:]
	}
	if local != "" && !isDotAtom(local) {
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(local); i++ {
			c := local[i]
			if c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('"')
		local = b.String()
	}
	// Byte by byte: strings.Map would turn 8-bit bytes that are not UTF-8
	// into U+FFFD, changing an address local(8) copies verbatim.
	out := []byte(local + domain)
	for i, c := range out {
		if c == '\r' || c == '\n' || c == 0 {
			out[i] = '?'
		}
	}
	return string(out)
}

// isDotAtom reports whether s is atext runs separated by single dots
// (RFC 5322 section 3.2.3); 8-bit bytes count as atext, as RFC 6532 allows
// for UTF-8 addresses.
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80, c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0:
		default:
			return false
		}
	}
	return true
}
