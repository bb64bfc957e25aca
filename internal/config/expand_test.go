package config

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/testutil"
)

// runMacExpandScript replays Postfix's mac_expand test driver: blocks of
// "name = value" definitions, then blocks of patterns, each ended by an
// empty line; every input line is echoed as "<< line".
func runMacExpandScript(in string) string {
	var out strings.Builder
	sc := bufio.NewScanner(strings.NewReader(in))
	for more := true; more; {
		table := map[string]string{}
		more = false
		for sc.Scan() {
			more = true
			line := sc.Text()
			fmt.Fprintf(&out, "<< %s\n", line)
			if line == "" {
				break
			}
			f := strings.FieldsFunc(line, func(r rune) bool { return r == '=' || r == ' ' || r == '\t' })
			if len(f) > 0 {
				v := ""
				if len(f) > 1 {
					v = f[1]
				}
				table[f[0]] = v
			}
		}
		if !more {
			break
		}
		ended := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintf(&out, "<< %s\n", line)
			if line == "" {
				ended = true
				break
			}
			e := &Expander{
				Lookup: func(n string) (string, bool) { v, ok := table[n]; return v, ok },
				Warn:   func(m string) { fmt.Fprintf(&out, "unknown: warning: %s\n", m) },
				// The test driver registers the "length" operator suffix.
				Suffixes: []string{"length"},
			}
			res, st := e.Expand(line)
			fmt.Fprintf(&out, "stat=%d result=%s\n", st, res)
		}
		if !ended {
			break
		}
		out.WriteString("\n")
	}
	return out.String()
}

// TestMacExpandVectors feeds Postfix's util/mac_expand.in and compares with
// mac_expand.ref byte for byte. There are no allowed differences.
func TestMacExpandVectors(t *testing.T) {
	dir := testutil.PostfixTests(t)
	in, err := os.ReadFile(filepath.Join(dir, "util", "mac_expand.in"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := os.ReadFile(filepath.Join(dir, "util", "mac_expand.ref"))
	if err != nil {
		t.Fatal(err)
	}
	got := runMacExpandScript(string(in))
	if got != string(ref) {
		t.Errorf("output differs from mac_expand.ref (%d vs %d bytes)", len(got), len(ref))
		gl, rl := strings.Split(got, "\n"), strings.Split(string(ref), "\n")
		for i := 0; i < len(gl) || i < len(rl); i++ {
			var g, r string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(rl) {
				r = rl[i]
			}
			if g != r {
				t.Errorf("line %d:\n got %q\nwant %q", i+1, g, r)
			}
		}
	}
}
