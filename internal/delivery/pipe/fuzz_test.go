package pipe

import (
	"strings"
	"testing"
)

// FuzzParseAttrs feeds master.cf argument lists (one per line) to the
// attribute parser and the argv= compiler: no panics, and what parses is
// well formed.
func FuzzParseAttrs(f *testing.F) {
	for _, row := range debianRows {
		f.Add(strings.Join(strings.Fields(row), "\n"))
	}
	f.Add("user=a:b\nflags=BDFORXhqu.>\neol=\\r\\n\\101\\\nsize=0\nnull_sender=\ndirectory=/\nargv=$$x\n${sender}$(user)$nexthop!")
	f.Add("argv=\nuser=x")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseAttrs(strings.Split(s, "\n"))
		if err != nil {
			return
		}
		if !a.hasUser || a.user == "" || len(a.argv) == 0 || a.argv[0] == "" || a.sizeLimit < 0 {
			t.Fatalf("accepted a bad row: %+v", a)
		}
		ts, err := compileArgv(a.argv)
		if err != nil {
			return
		}
		if len(ts) != len(a.argv) {
			t.Fatalf("%d templates for %d arguments", len(ts), len(a.argv))
		}
	})
}

// FuzzExpand compiles one argument and expands it for two recipients with
// every flag combination: no panics, per-recipient arguments repeat at
// most once per recipient, and a macro-free argument comes out as written
// (with $$ made $).
func FuzzExpand(f *testing.F) {
	f.Add("-a$sender", "Joe+x@Example.COM", "o@x", "+", uint16(flagQuote|flagFoldHost))
	f.Add("($recipient)", "a b@c", "", "-", uint16(flagFoldUser))
	f.Add("${user}@${domain}:${extension}/$(mailbox)", "owner-x@y", "", "-+", uint16(0))
	f.Add("$$literal", "@x", "", "", uint16(0))
	f.Fuzz(func(t *testing.T, arg, rcpt, orig, delim string, flags uint16) {
		tmpl, err := compileArg(arg)
		if err != nil {
			return
		}
		sp := splitter{delim: delim, doubleBounce: "double-bounce", ownerRequest: true}
		rcpts := []rcptInfo{{address: rcpt, orig: orig}, {address: "second@example.org"}}
		out := expandArgv([]argTemplate{tmpl}, vars(), rcpts, int(flags), sp)
		switch {
		case tmpl.perRcpt && len(out) > 2:
			t.Fatalf("%q: %d arguments for 2 recipients", arg, len(out))
		case !tmpl.perRcpt && len(out) != 1:
			t.Fatalf("%q: %d arguments, want 1", arg, len(out))
		case !strings.Contains(arg, "$") && out[0] != arg:
			t.Fatalf("%q became %q", arg, out[0])
		}
	})
}
