package aliases

import (
	"strings"
	"unicode/utf8"
)

// PrintableUTF8 is how Postfix quotes a line with invalid UTF-8 in a
// warning: every byte that is not part of a valid sequence becomes '?'.
func PrintableUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			b.WriteByte('?')
			i++
			continue
		}
		b.WriteString(s[i : i+n])
		i += n
	}
	return b.String()
}

// Printable is how Postfix shows a key in a warning: control characters
// become '?', and so do bytes outside ASCII unless utf8 (smtputf8_enable)
// is on, when only invalid UTF-8 does. A log line must not carry raw
// control characters.
func Printable(s string, utf8On bool) string {
	if utf8On {
		s = PrintableUTF8(s)
	}
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c == 0x7f || (!utf8On && c >= 0x80) {
			b[i] = '?'
		}
	}
	return string(b)
}
