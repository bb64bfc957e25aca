package matchlist

import (
	"net/netip"
	"strings"
	"testing"

	"moat/internal/maps"
)

// FuzzParseMatch feeds arbitrary list text, names and addresses through
// Parse and Match. Beyond not crashing it checks invariants that hold for
// any list without tables: matching never errors, case never matters, and
// an address pattern that parsed matches its own address.
func FuzzParseMatch(f *testing.F) {
	for _, s := range []struct{ list, name, addr string }{
		{"168.100.3.0/28", "dummy", "168.100.3.2"},
		{"!168.100.3.2 168.100.3.0/28", "dummy", "168.100.3.3"},
		{"[2001:240:5c7::]/64", "dummy", "2001:240:5c7:0:2d0:b7ff:fe88:2ca8"},
		{"[2001:240:5c7:0:2d0:b7ff:fe88:2ca7]/64", "x", "2001:240:5c7::1"},
		{"example.com, .example.org", "a.example.org", "192.0.2.1"},
		{"be/be", "x.x.x", "127.0.0.1"},
		{"[be:be]", "x.x.x", "::1"},
		{"[1.2.3.4/8]", "a", "1.2.3.4"},
		{"!!a, {b c}", "A", ""},
		{"inline:{a=b}", "a", "1.2.3.4"},
		{"static:x !static:y", "a", "::ffff:1.2.3.4"},
	} {
		f.Add(s.list, s.name, s.addr, uint8(0))
		f.Add(s.list, s.name, s.addr, uint8(8))
	}
	f.Fuzz(func(t *testing.T, list, name, addrText string, k uint8) {
		kind := Kind(k % 4)
		// The fuzzer must not read arbitrary files.
		if fileOrTable(list) {
			return
		}
		opts := maps.DefaultOptions()
		opts.UTF8 = k&8 != 0
		l, err := ParseStyle("fuzz", list, kind, k&4 != 0, opts)
		if err != nil {
			return
		}
		defer l.Close()
		a, _ := netip.ParseAddr(addrText)
		got, err := l.Match(name, a)
		if err != nil {
			t.Fatalf("Match(%q, %q) on %q: %v", name, addrText, list, err)
		}
		if up, err := l.Match(asciiUpper(name), a); err != nil || up != got {
			t.Fatalf("%q: case changed the answer for %q: %v/%v", list, name, got, up)
		}
		for _, p := range l.pats {
			if p.hasCIDR && !p.negate && len(l.pats) == 1 {
				if ok, _ := l.Match("", p.cidr.Addr()); !ok {
					t.Fatalf("%q does not match its own network address %v", list, p.cidr.Addr())
				}
			}
		}
	})
}

// fileOrTable reports whether the fuzzer's list would read a file or open
// a table that touches the file system or the environment; inline: and
// static: stay in memory and are allowed.
func fileOrTable(list string) bool {
	for _, tok := range strings.FieldsFunc(list, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
	}) {
		tok = strings.TrimLeft(tok, "!{")
		if strings.HasPrefix(tok, "/") {
			return true
		}
		if i := strings.IndexByte(tok, ':'); i > 0 && tok[0] != '[' {
			switch tok[:i] {
			case "inline", "static":
			default:
				return true
			}
		}
	}
	return false
}

// asciiUpper uppercases ASCII letters only, byte by byte: the case Postfix
// folds without smtputf8 (strings.ToUpper would turn "ı" into "I", which
// folds to "i", and strings.Map would rewrite invalid UTF-8).
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
