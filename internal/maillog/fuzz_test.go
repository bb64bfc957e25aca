package maillog

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzStrftime: maillog_file_rotate_suffix comes from main.cf; whatever it
// holds, Strftime must not panic, and a result it accepts must be a
// non-empty file-name suffix without '/' or NUL.
func FuzzStrftime(f *testing.F) {
	for _, s := range []string{"%Y%m%d-%H%M%S", "%F_%T", "%%", "%", "x%", "%q", "%e%j%p%I", "a/%Y", "%s.%z%Z", "%a%A%b%B%h%C%y%u%w", "é%Y"} {
		f.Add(s, int64(1782990000))
	}
	f.Fuzz(func(t *testing.T, format string, unix int64) {
		tm := time.Unix(unix%(1<<40), 0).UTC()
		s, err := Strftime(format, tm)
		if err != nil {
			return
		}
		if s == "" || strings.ContainsAny(s, "/\x00") {
			t.Fatalf("Strftime(%q) = %q", format, s)
		}
		if !strings.Contains(format, "%") && s != format {
			t.Fatalf("Strftime(%q) changed a literal format: %q", format, s)
		}
	})
}

// FuzzPrintable: no input may put a control character (a forged line
// break, a terminal escape) into a log record, and with UTF-8 on the
// record stays valid UTF-8.
func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"plain", "a\r\nb", "caf\xc3\xa9", "\xff\xfe", "\xc2\x9b31m", "\x1b[2J"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, in string, utf8ok bool) {
		out := Printable(in, utf8ok)
		for _, r := range out {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
				t.Fatalf("Printable(%q) kept control %U", in, r)
			}
			if !utf8ok && r >= 0x80 {
				t.Fatalf("Printable(%q, false) kept non-ASCII %U", in, r)
			}
		}
		if !utf8.ValidString(out) {
			t.Fatalf("Printable(%q) = invalid UTF-8 %q", in, out)
		}
		if cut := truncate(out, MaxText); len(cut) > MaxText || !utf8.ValidString(cut) {
			t.Fatalf("truncate broke %q", out)
		}
	})
}
