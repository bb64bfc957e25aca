package pickup

import (
	"strings"
	"testing"

	"moat/internal/maildrop"
)

// Local submissions always get cleanup's local header rewriting: bare
// header addresses are qualified with $myorigin and the canonical maps
// apply (ADDRESS_REWRITING_README, "To rewrite message headers or not").
func TestHeaderRewriting(t *testing.T) {
	f := newFixture(t, "canonical_maps = inline:{ {joe@mx.example=Joe.Public@example} }\n")
	f.submit(t, &maildrop.Envelope{Sender: "joe", Recipients: []string{"amy"}},
		"From: Joe <joe>\r\nTo: amy,\r\n\tbo@other.example (Bo)\r\nSubject: joe\r\n\r\nFrom: joe\r\n")
	if n, err := f.p.Scan(); err != nil || n != 1 {
		t.Fatalf("Scan = %d, %v", n, err)
	}
	_, content := f.only(t)
	want := "From: Joe <Joe.Public@example>\r\nTo: amy@mx.example,\r\n\tbo@other.example (Bo)\r\nSubject: joe\r\n"
	if !strings.Contains(content, want) || !strings.HasSuffix(content, "\r\n\r\nFrom: joe\r\n") {
		t.Fatalf("content:\n%s", content)
	}
	if err := f.p.Close(); err != nil {
		t.Fatal(err)
	}
}
