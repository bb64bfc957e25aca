package cleanup

import (
	"bytes"
	"strings"
	"testing"

	"moat/internal/maps"
)

// FuzzFilter feeds arbitrary messages through the MIME parser and the
// filter, whole and in pieces split at an arbitrary point, with small
// limits so that truncation and line pieces are exercised. The output must
// not depend on how the input was split, and nothing may panic.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{
		simple,
		"Subject: a\r\n\tb\r\n\r\nbody",
		"content-type : multipart/(co\\m\\)ment)x; boundary = \"ab\\cd \n ef\" m\n\n--abcd ef\ncontent-type: message/rfc822\n\nsubject: n\ncontent-type: multipart/m; boundary(c)=\"pq\"\ncontent-transfer-encoding: base64\n\n--pq\nh: 1\n\nb\n--abcd ef--\nepilog\n",
		"Content-Type: multipart/mixed; boundary=x\n\n--x\n--x\n--x--\n--x\n",
		"Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n",
		"a: (((\\\n\n",
		"x\r\n",
		"",
	} {
		f.Add([]byte(s), uint16(5))
	}
	hdr, err := maps.ParseRegexpTable("h", []byte("/^Subject:/ PREPEND X-A: b\n/^X-Drop/ IGNORE\n/^content-type:/ REPLACE Content-Type: text/plain\n"))
	if err != nil {
		f.Fatal(err)
	}
	body, err := maps.ParseRegexpTable("b", []byte("/^--/ WARN\n/^drop/ STRIP\n/^rep/ REPLACE x\n"))
	if err != nil {
		f.Fatal(err)
	}
	checks := Checks{Header: []maps.Table{hdr}, MIME: []maps.Table{hdr}, Nested: []maps.Table{hdr}, Body: []maps.Table{body}}
	lim := Limits{HeaderSize: 64, LineLength: 16, Nesting: 4}
	runOnce := func(t *testing.T, msg []byte, split int) ([]byte, Result) {
		var out bytes.Buffer
		fl := New(&out, Options{Checks: checks, Limits: lim, QueueID: "Q"})
		if _, err := fl.Write(msg[:split]); err != nil {
			t.Fatal(err)
		}
		if _, err := fl.Write(msg[split:]); err != nil {
			t.Fatal(err)
		}
		if err := fl.Close(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes(), *fl.Result()
	}
	f.Fuzz(func(t *testing.T, msg []byte, at uint16) {
		if len(msg) > 1<<16 {
			return
		}
		split := int(at) % (len(msg) + 1)
		whole, r1 := runOnce(t, msg, 0)
		parts, r2 := runOnce(t, msg, split)
		if !bytes.Equal(whole, parts) {
			t.Fatalf("output depends on the split at %d:\n%q\n%q", split, whole, parts)
		}
		if r1.MIMEErrors != r2.MIMEErrors || len(r1.Logs) != len(r2.Logs) {
			t.Fatalf("result depends on the split at %d", split)
		}
		// Bounded output: at most two bytes more per input line, plus
		// the prepended headers.
		if max := 2*len(msg) + 16*(bytes.Count(msg, []byte("\n"))+1); len(whole) > max {
			t.Fatalf("output %d bytes for %d input bytes", len(whole), len(msg))
		}
	})
}

// FuzzContentType checks the RFC 2045 tokenizer behind Content-Type and
// Content-Transfer-Encoding parsing on arbitrary header values.
func FuzzContentType(f *testing.F) {
	for _, s := range []string{
		`multipart/(co\m\)ment)mumble mumble; boundary = "ab\cd ` + "\n" + ` ef" mumble`,
		`multipart/mumble; boundary(comment)="pqrs"`,
		`message/rfc822`,
		`text/plain; charset="us-ascii"; boundary=x`,
		`((((`, `"unterminated`, `a/b; boundary="\`, `;;;=`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		typ, sub, b := parseContentType(v)
		if strings.ContainsAny(typ+sub, "/;= \t\n()\"") {
			t.Fatalf("type %q subtype %q hold separators", typ, sub)
		}
		if typ != strings.ToLower(typ) || sub != strings.ToLower(sub) {
			t.Fatalf("type %q/%q not lower case", typ, sub)
		}
		if strings.Contains(b, "\n") {
			t.Fatalf("boundary %q holds a newline", b)
		}
		if len(b) > len(v) {
			t.Fatalf("boundary %q longer than the value", b)
		}
		for _, tok := range tokenize(v) {
			if tok.kind == tokAtom && tok.text == "" {
				t.Fatal("empty atom")
			}
		}
	})
}
