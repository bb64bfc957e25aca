package postqueue

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseRequest checks that a request line anyone can leave in public/
// never parses into something WriteRequest would not have written: the
// scheduler acts on what ParseRequest accepts.
func FuzzParseRequest(f *testing.F) {
	f.Add("flush")
	f.Add("flush-id 4jXc8C59mkz1SChH")
	f.Add("flush-site example.com")
	f.Add("flush-site a b")
	f.Add("flush-id ../../etc/passwd")
	f.Fuzz(func(t *testing.T, line string) {
		r, ok := ParseRequest(line)
		if !ok {
			return
		}
		again := r.Kind
		if r.Arg != "" {
			again += " " + r.Arg
		}
		if again != line {
			t.Fatalf("%q parsed as %+v, which writes as %q", line, r, again)
		}
		if strings.ContainsAny(r.Arg, "/ \t\n\x00") && r.Kind == FlushID {
			t.Fatalf("queue ID %q accepted", r.Arg)
		}
	})
}

// FuzzQuoteJSON checks that every string, valid UTF-8 or not, comes out
// as a JSON string that decodes back to it (valid UTF-8 input), so that
// postqueue -j output always parses.
func FuzzQuoteJSON(f *testing.F) {
	f.Add("alice@example.com")
	f.Add("\"quoted\\\"\n\t\x01\x7f")
	f.Add("ünïcode@example.com")
	f.Fuzz(func(t *testing.T, s string) {
		var b strings.Builder
		quoteJSON(&b, s)
		var got string
		err := json.Unmarshal([]byte(b.String()), &got)
		if !utf8.ValidString(s) {
			return // Postfix passes bytes through; decoders differ on them
		}
		if err != nil {
			t.Fatalf("%q quoted as %s: %v", s, b.String(), err)
		}
		if got != s {
			t.Fatalf("%q round-tripped as %q", s, got)
		}
	})
}
