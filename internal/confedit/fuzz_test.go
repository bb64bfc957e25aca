package confedit

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzEdit checks the editor on arbitrary main.cf text and arguments: no
// panics; lines that are not the edited parameter's survive unchanged; a
// set parameter then reads back with its value exactly once per definition;
// removing it leaves no line naming it.
func FuzzEdit(f *testing.F) {
	f.Add([]byte("a = 1\n  cont\n# c\nb = 2\n"), "a", "x y")
	f.Add([]byte("a = 1"), "c", "3")
	f.Add([]byte("a = 1\r\n\tx\r\n\n  y\nb=1"), "a", "$b")
	f.Add([]byte("  lead\n=x\na b = 1\n"), "a", "")
	f.Add([]byte(sample), "mydestination", "$myhostname")
	if dist, err := os.ReadFile(filepath.Join("testdata", "main.cf.dist")); err == nil {
		f.Add(dist, "debugger_command", "gdb")
	}
	f.Fuzz(func(t *testing.T, data []byte, name, value string) {
		as, err := ParseAssignment(name + "=" + value)
		if err != nil {
			return
		}
		out, err := EditSet(data, []string{name + "=" + value})
		if err != nil {
			t.Fatal(err)
		}
		want := as.Name + " = " + as.Value
		if !bytes.Contains(out, []byte(want+"\n")) {
			t.Fatalf("%q lacks %q", out, want)
		}
		// Other parameters keep their lines.
		for _, l := range strings.SplitAfter(string(data), "\n") {
			c := strings.TrimRight(l, "\n")
			if c == "" || isSpace(c[0]) || c[0] == '#' || lineName(c) == as.Name {
				continue
			}
			if !bytes.Contains(out, []byte(c)) {
				t.Fatalf("line %q lost: %q", c, out)
			}
		}
		removed, err := EditRemove(out, []string{as.Name})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(removed), "\n") {
			if l != "" && !isSpace(l[0]) && l[0] != '#' && lineName(l) == as.Name {
				t.Fatalf("%q survived -X: %q", as.Name, removed)
			}
		}
		commented, err := EditComment(data, []string{as.Name})
		if err != nil {
			t.Fatal(err)
		}
		if len(commented) < len(data) {
			t.Fatalf("-# shortened the file: %q -> %q", data, commented)
		}
	})
}
