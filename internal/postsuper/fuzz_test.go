package postsuper

import (
	"strings"
	"testing"
)

// FuzzReadIDs checks the "-d -" reader: the lines it returns, joined
// again, are the input, and none contains a newline.
func FuzzReadIDs(f *testing.F) {
	f.Add("4jXc8C59mkz1SChH\n4jXc8C5BfDz1SChK* 500 Sat\n")
	f.Add("\n\n \t\r\n")
	f.Add("a\x00b c")
	f.Fuzz(func(t *testing.T, in string) {
		ids, err := readIDs(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if strings.Contains(id, "\n") {
				t.Fatalf("line %q with a newline from %q", id, in)
			}
		}
		joined := strings.Join(ids, "\n")
		if len(ids) > 0 && strings.HasSuffix(in, "\n") {
			joined += "\n"
		}
		if joined != in {
			t.Fatalf("lines %q do not make up %q", ids, in)
		}
	})
}
