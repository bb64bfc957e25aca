package postsuper

import (
	"strings"
	"testing"
)

// FuzzReadIDs checks the "-d -" reader: every ID it returns is a single
// non-empty word that occurs in the input, and it never fails on lines
// within the limit.
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
			if id == "" || strings.ContainsAny(id, " \t\n\r") || !strings.Contains(in, id) {
				t.Fatalf("bad ID %q from %q", id, in)
			}
		}
	})
}
