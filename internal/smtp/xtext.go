package smtp

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrXtext reports malformed xtext (RFC 3461 §4).
var ErrXtext = errors.New("malformed xtext")

// XtextDecode decodes xtext (RFC 3461 §4): printable US-ASCII except '+'
// and '=', with "+HH" standing for any byte. Lower-case hex is accepted
// though the RFC writes upper case, as senders do use it.
func XtextDecode(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", ErrXtext
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", ErrXtext
			}
			b.WriteByte(byte(v))
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", ErrXtext
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// XtextEncode encodes s as xtext (RFC 3461 §4), for ENVID and ORCPT
// written back into DSNs and relayed MAIL/RCPT commands.
func XtextEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			b.WriteByte('+')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// UTF8XtextDecode decodes utf-8-addr-xtext and utf-8-addr-unitext (RFC 6533
// §3), the ORCPT forms for addr-type "utf-8": "\x{HEX}" stands for one
// Unicode scalar value; raw UTF-8 is allowed in unitext.
func UTF8XtextDecode(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", ErrXtext
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' {
			rest := s[i:]
			end := strings.IndexByte(rest, '}')
			if !strings.HasPrefix(rest, `\x{`) || end < 4 || end > 9 {
				return "", ErrXtext
			}
			v, err := strconv.ParseUint(rest[3:end], 16, 32)
			if err != nil || !utf8.ValidRune(rune(v)) {
				return "", ErrXtext
			}
			b.WriteRune(rune(v))
			i += end
			continue
		}
		if c < 0x80 && (c <= ' ' || c == 0x7f || c == '+' || c == '=') {
			return "", ErrXtext
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}
