package matchlist

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/maps"
	"moat/internal/testutil"
)

// moatOutput lists the namadr_list vectors where moat answers differently
// from Postfix 3.7, on purpose, with what moat prints instead. Each is a
// pattern Postfix accepts at start-up and complains about only when a lookup
// reaches it (then every lookup fails); moat refuses it when the list is
// parsed, so the daemon does not start with a list it cannot evaluate.
var moatOutput = map[string]string{
	// Unbracketed IPv6 is a table of type "2001": Postfix logs three
	// lines from its surrogate table, moat one from the failed open.
	`./namadr_list 2001:240:5c7:0:2d0:b7ff:fe88:2ca7 dummy 2001:240:5c7:0:2d0:b7ff:fe88:2ca7`: "" +
		"./namadr_list: warning: command line: 2001:240:5c7:0:2d0:b7ff:fe88:2ca7: unsupported dictionary type: 2001:240:5c7:0:2d0:b7ff:fe88:2ca7\n" +
		"dummy/2001:240:5c7:0:2d0:b7ff:fe88:2ca7: ERROR\n",
	// Postfix never parses an IPv6 pattern for an IPv4 client, so it
	// answers NO; moat has already refused the pattern.
	`./namadr_list '[be:be]' x.x.x 127.0.0.1`: "" +
		"./namadr_list: warning: command line: bad address pattern: \"be:be\"\n" +
		"x.x.x/127.0.0.1: ERROR\n",
	// A missing file: Postfix's surrogate table again.
	`./namadr_list /tmp/nosuchfile bar 168.100.3.3`: "" +
		"./namadr_list: warning: command line: open file /tmp/nosuchfile: no such file or directory\n" +
		"bar/168.100.3.3: ERROR\n",
}

// TestNamadrListVectors runs Postfix's global/namadr_list.in through the
// same steps as its test driver (parse the list named "command line" with
// parent-domain matching, match NAME and ADDR, print YES, NO or ERROR after
// any warning) and compares with namadr_list.ref line for line.
func TestNamadrListVectors(t *testing.T) {
	dir := filepath.Join(testutil.PostfixTests(t), "global")
	in, err := os.ReadFile(filepath.Join(dir, "namadr_list.in"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := os.ReadFile(filepath.Join(dir, "namadr_list.ref"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	junk := filepath.Join(tmp, "junk")
	compared := 0
	refLines := strings.SplitAfter(string(ref), "\n")
	for _, line := range strings.Split(strings.TrimSpace(string(in)), "\n") {
		switch {
		case strings.HasPrefix(line, "echo foo !bar baz"):
			if err := os.WriteFile(junk, []byte("foo !bar baz\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		case strings.HasPrefix(line, "rm "):
			continue
		}
		out := runVector(t, line, junk)
		compared++
		// The reference has no separators between commands: take as many
		// lines as Postfix printed for this one (through its answer line).
		var postfix strings.Builder
		for len(refLines) > 0 {
			l := refLines[0]
			refLines = refLines[1:]
			postfix.WriteString(l)
			if strings.HasSuffix(l, ": YES\n") || strings.HasSuffix(l, ": NO\n") || strings.HasSuffix(l, ": ERROR\n") {
				break
			}
		}
		if alt, ok := moatOutput[line]; ok {
			if out != alt {
				t.Errorf("%s:\n got %q\nwant %q (moat's documented difference; Postfix: %q)", line, out, alt, postfix.String())
			}
			continue
		}
		if out != postfix.String() {
			t.Errorf("%s:\n got %q\nwant %q", line, out, postfix.String())
		}
	}
	if compared != 40 {
		t.Errorf("compared %d vectors, want the 40 of namadr_list.in", compared)
	}
	if len(refLines) > 0 && strings.Join(refLines, "") != "" {
		t.Errorf("reference lines left over: %q", refLines)
	}
}

// runVector runs one "./namadr_list PATTERNS NAME ADDR" line, with an
// optional "env VAR=VALUE" in front, as Postfix's driver would.
func runVector(t *testing.T, line, junk string) string {
	t.Helper()
	words := shellWords(line)
	if len(words) > 0 && words[0] == "env" {
		k, v, _ := strings.Cut(words[1], "=")
		t.Setenv(k, v)
		words = words[2:]
	}
	if len(words) != 4 || words[0] != "./namadr_list" {
		t.Fatalf("unexpected vector line %q", line)
	}
	patterns := strings.ReplaceAll(words[1], "/tmp/junk", junk)
	name, addrText := words[2], words[3]
	var b strings.Builder
	l, err := ParseStyle("command line", patterns, Host, true, maps.DefaultOptions())
	if err != nil {
		fmt.Fprintf(&b, "./namadr_list: warning: %v\n%s/%s: ERROR\n", err, name, addrText)
		return b.String()
	}
	defer l.Close()
	addr, _ := netip.ParseAddr(addrText) // an invalid address matches no address pattern, as in Postfix
	ok, err := l.Match(name, addr)
	switch {
	case err != nil:
		// Postfix's warning is the text before the table's own reason.
		msg := err.Error()
		if i := strings.Index(msg, ": table lookup problem"); i >= 0 {
			msg = msg[:i+len(": table lookup problem")]
		}
		fmt.Fprintf(&b, "./namadr_list: warning: %s\n%s/%s: ERROR\n", msg, name, addrText)
	case ok:
		fmt.Fprintf(&b, "%s/%s: YES\n", name, addrText)
	default:
		fmt.Fprintf(&b, "%s/%s: NO\n", name, addrText)
	}
	return b.String()
}

// shellWords splits a vector line the way sh does for the forms it uses:
// blanks separate words, single quotes group.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			quoted = !quoted
			in = true
		case (c == ' ' || c == '\t') && !quoted:
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}
