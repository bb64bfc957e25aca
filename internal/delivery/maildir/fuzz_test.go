package maildir

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzConvertCRLF checks the streaming converter against a whole-input
// reference for any split of the input into writes: a CRLF cut between two
// writes must still become one LF.
func FuzzConvertCRLF(f *testing.F) {
	f.Add([]byte("a\r\nb\r\n"), []byte{1})
	f.Add([]byte("\r\r\n\r"), []byte{1, 1, 1})
	f.Add([]byte("x\ry\r\n.\r\n"), []byte{2, 0, 3})
	f.Add([]byte{}, []byte{})
	f.Add([]byte("\r"), []byte{0})
	f.Fuzz(func(t *testing.T, data, splits []byte) {
		var out bytes.Buffer
		lw := &lfWriter{w: &out}
		rest := data
		for _, s := range splits {
			n := min(int(s), len(rest))
			if _, err := lw.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if _, err := lw.Write(rest); err != nil {
			t.Fatal(err)
		}
		if err := lw.Flush(); err != nil {
			t.Fatal(err)
		}
		want := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("convert(%q split %v) = %q, want %q", data, splits, out.Bytes(), want)
		}
		if lw.n != int64(len(want)) {
			t.Fatalf("counted %d bytes, wrote %d", lw.n, len(want))
		}
		if len(want) > 0 && lw.last != want[len(want)-1] {
			t.Fatalf("last byte %q, want %q", lw.last, want[len(want)-1])
		}
	})
}

// FuzzQuoteAddr checks that no address can break out of its header line
// and that quoting loses nothing: unquoting the local part gives it back.
func FuzzQuoteAddr(f *testing.F) {
	for _, s := range []string{"a@b", "", "@", `a"b\c@d`, "a b@c@d", ".a@b", "a\r\nX: y@z", "jösé@x", "\x00@\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		got := quoteAddr(addr)
		if strings.ContainsAny(got, "\r\n\x00") {
			t.Fatalf("quoteAddr(%q) = %q has a line break or NUL", addr, got)
		}
		if strings.ContainsAny(addr, "\r\n\x00") {
			return
		}
		local, domain := addr, ""
		if at := strings.LastIndexByte(addr, '@'); at >= 0 {
			local, domain = addr[:at], addr[at:]
		}
		if !strings.HasSuffix(got, domain) {
			t.Fatalf("quoteAddr(%q) = %q changed the domain", addr, got)
		}
		q := strings.TrimSuffix(got, domain)
		if q == local {
			if local != "" && !isDotAtom(local) {
				t.Fatalf("quoteAddr(%q) left %q unquoted", addr, local)
			}
			return
		}
		if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
			t.Fatalf("quoteAddr(%q) = %q: local part neither kept nor quoted", addr, got)
		}
		var b strings.Builder
		inner := q[1 : len(q)-1]
		for i := 0; i < len(inner); i++ {
			c := inner[i]
			if c == '\\' {
				i++
				if i == len(inner) {
					t.Fatalf("quoteAddr(%q) = %q ends in a lone backslash", addr, got)
				}
				c = inner[i]
			} else if c == '"' {
				t.Fatalf("quoteAddr(%q) = %q has an unescaped quote", addr, got)
			}
			b.WriteByte(c)
		}
		if b.String() != local {
			t.Fatalf("quoteAddr(%q): unquoted %q, want %q", addr, b.String(), local)
		}
	})
}
