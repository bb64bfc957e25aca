package postcat

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzWriteContent checks that the header/body split never loses or
// invents content: the header and body outputs together are the whole
// output, and the whole output is the input with CRLF made LF and a final
// newline added.
func FuzzWriteContent(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"))
	f.Add([]byte("A: b\n c\nD : e\n\nx"))
	f.Add([]byte("not a header\nA: b\n"))
	f.Add([]byte(""))
	f.Add([]byte("\r\r\n\n\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var all, hdr, body bytes.Buffer
		if err := writeContent(&all, bytes.NewReader(in), Sections{Header: true, Body: true}); err != nil {
			t.Fatal(err)
		}
		if err := writeContent(&hdr, bytes.NewReader(in), Sections{Header: true}); err != nil {
			t.Fatal(err)
		}
		if err := writeContent(&body, bytes.NewReader(in), Sections{Body: true}); err != nil {
			t.Fatal(err)
		}
		if hdr.String()+body.String() != all.String() {
			t.Fatalf("header %q + body %q != all %q", hdr.String(), body.String(), all.String())
		}
		want := strings.ReplaceAll(string(in), "\r\n", "\n")
		if want != "" && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if all.String() != want {
			t.Fatalf("all %q, want %q", all.String(), want)
		}
	})
}
