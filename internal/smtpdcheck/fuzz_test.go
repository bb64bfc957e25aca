package smtpdcheck

import (
	"strings"
	"testing"
)

// FuzzParse checks that any line parses without panicking, that the words
// of Split never contain a separator outside braces, and that a parsed
// command's fields come from its words.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"client foo 1.2.3.4", "client unknown 1.2.3.4 5", "helo foo.", "mail <>", "rcpt <a@b>",
		"recipient_restrictions check_sender_access,hash:./x,reject", "restriction_class c,permit",
		"x inline:{ a=b, {c} }", "#! ../bin/postmap x", "!ls", "flush_dnsxl_cache", "{", "}", "{ } {",
		"smtpd_null_access_lookup_key <> ", "fingerprint ab:cd", "etrn example.com", "\t\r",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		words := Split(line)
		for _, w := range words {
			if w == "" {
				t.Fatalf("Split(%q) gave an empty word", line)
			}
			depth := 0
			for i := 0; i < len(w); i++ {
				switch w[i] {
				case '{':
					depth++
				case '}':
					if depth > 0 {
						depth--
					}
				case ' ', '\t', '\r', '\n':
					if depth == 0 {
						t.Fatalf("Split(%q): word %q has a separator outside braces", line, w)
					}
				}
			}
			if !strings.Contains(line, w) {
				t.Fatalf("Split(%q): word %q is not in the line", line, w)
			}
		}
		c := Parse(line)
		switch c.Kind {
		case Client:
			if len(c.Args) < 3 || c.Name != c.Args[1] || c.Value != c.Args[2] {
				t.Fatalf("Parse(%q) = %+v", line, c)
			}
			if c.Status < 0 {
				t.Fatalf("Parse(%q): negative status", line)
			}
		case Helo, Mail, Rcpt, Etrn, Fingerprint, Restrictions, Param, Class:
			if len(c.Args) != 2 {
				t.Fatalf("Parse(%q) = %+v: want two words", line, c)
			}
		}
	})
}
