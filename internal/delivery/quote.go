package delivery

import "strings"

// QuoteAddr renders an internal-form address for a delivery header
// (Return-Path:, Delivered-To:, X-Original-To:) or an mbox From_ line,
// quoting the local part when it is not an RFC 5322 dot-atom (section
// 3.4.1), as Postfix's quote_822_local() does. CR, LF and NUL cannot occur
// in an SMTP envelope address; if one ever does, it becomes '?' so that an
// address can never start a line of its own.
func QuoteAddr(addr string) string {
	local, domain := addr, ""
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local, domain = addr[:at], addr[at:]
	}
	if local != "" && !IsDotAtom(local) {
		local = QuoteLocal(local)
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

// QuoteLocal puts a local part in double quotes, escaping '"' and '\'
// (RFC 5321 section 4.1.2 Quoted-string).
func QuoteLocal(local string) string {
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
	return b.String()
}

// IsDotAtom reports whether s is atext runs separated by single dots
// (RFC 5322 section 3.2.3); 8-bit bytes count as atext, as RFC 6532 allows
// for UTF-8 addresses.
func IsDotAtom(s string) bool {
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
