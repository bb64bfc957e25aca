package delivery

import (
	"strings"
	"testing"
)

// FuzzQuoteAddr checks that no address can break out of its header line
// and that quoting loses nothing: unquoting the local part gives it back.
func FuzzQuoteAddr(f *testing.F) {
	for _, s := range []string{"a@b", "", "@", `a"b\c@d`, "a b@c@d", ".a@b", "a\r\nX: y@z", "jösé@x", "\x00@\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		got := QuoteAddr(addr)
		if strings.ContainsAny(got, "\r\n\x00") {
			t.Fatalf("QuoteAddr(%q) = %q has a line break or NUL", addr, got)
		}
		if strings.ContainsAny(addr, "\r\n\x00") {
			return
		}
		local, domain := addr, ""
		if at := strings.LastIndexByte(addr, '@'); at >= 0 {
			local, domain = addr[:at], addr[at:]
		}
		if !strings.HasSuffix(got, domain) {
			t.Fatalf("QuoteAddr(%q) = %q changed the domain", addr, got)
		}
		q := strings.TrimSuffix(got, domain)
		if q == local {
			if local != "" && !IsDotAtom(local) {
				t.Fatalf("QuoteAddr(%q) left %q unquoted", addr, local)
			}
			return
		}
		if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
			t.Fatalf("QuoteAddr(%q) = %q: local part neither kept nor quoted", addr, got)
		}
		var b strings.Builder
		inner := q[1 : len(q)-1]
		for i := 0; i < len(inner); i++ {
			c := inner[i]
			if c == '\\' {
				i++
				if i == len(inner) {
					t.Fatalf("QuoteAddr(%q) = %q ends in a lone backslash", addr, got)
				}
				c = inner[i]
			} else if c == '"' {
				t.Fatalf("QuoteAddr(%q) = %q has an unescaped quote", addr, got)
			}
			b.WriteByte(c)
		}
		if b.String() != local {
			t.Fatalf("QuoteAddr(%q): unquoted %q, want %q", addr, b.String(), local)
		}
	})
}
