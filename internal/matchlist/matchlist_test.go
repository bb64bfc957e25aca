package matchlist

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/config"
	"moat/internal/maps"
)

func mustParse(t *testing.T, origin, value string, kind Kind, parent bool) *List {
	t.Helper()
	l, err := ParseStyle(origin, value, kind, parent, maps.DefaultOptions())
	if err != nil {
		t.Fatalf("ParseStyle(%q): %v", value, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func addr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

type probe struct {
	name, addr string
	want       bool
}

func check(t *testing.T, l *List, probes []probe) {
	t.Helper()
	for _, p := range probes {
		got, err := l.Match(p.name, addr(p.addr))
		if err != nil {
			t.Errorf("%s %q: Match(%q, %q): %v", l.Kind(), l, p.name, p.addr, err)
			continue
		}
		if got != p.want {
			t.Errorf("%s %q: Match(%q, %q) = %v, want %v", l.Kind(), l, p.name, p.addr, got, p.want)
		}
	}
}

// postconf(5), parent_domain_matches_subdomains: with the feature listed,
// "example.com" matches itself and its subdomains; without it, only itself,
// and ".example.com" matches the subdomains.
func TestParentDomainStyle(t *testing.T) {
	parent := mustParse(t, "relay_domains", "example.com", Domain, true)
	check(t, parent, []probe{
		{"example.com", "", true},
		{"EXAMPLE.COM", "", true},
		{"mail.example.com", "", true},
		{"a.b.example.com", "", true},
		{"badexample.com", "", false},
		{"example.com.evil", "", false},
		{"com", "", false},
	})
	dotParent := mustParse(t, "relay_domains", ".example.com", Domain, true)
	// Postfix's match_hostname: with parent matching on, ".example.com"
	// needs a name ending in "..example.com".
	check(t, dotParent, []probe{{"mail.example.com", "", false}, {"example.com", "", false}})

	strict := mustParse(t, "x", "example.com, .example.org", Domain, false)
	check(t, strict, []probe{
		{"example.com", "", true},
		{"mail.example.com", "", false},
		{"example.org", "", false},
		{"mail.example.org", "", true},
		{"a.b.example.org", "", true},
	})
}

// Parse decides parent matching from Postfix's default
// parent_domain_matches_subdomains; New reads the configuration.
func TestParseAndNewParentStyle(t *testing.T) {
	l, err := Parse("mynetworks", "example.com", Host, maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	check(t, l, []probe{{"a.example.com", "", true}})
	l, err = Parse("smtpd_client_event_limit_exceptions", "example.com", Host, maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	check(t, l, []probe{{"a.example.com", "", false}, {"example.com", "", true}})
	// postconf(5): "the same syntax and parent-domain matching behavior as
	// mynetworks".
	l, err = Parse("smtpd_forbid_bare_newline_exclusions", "example.com", Host, maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	check(t, l, []probe{{"a.example.com", "", true}})

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.cf"), "parent_domain_matches_subdomains = smtpd_access_maps, mynetworks\n"+
		"smtpd_forbid_bare_newline_exclusions = example.org\n"+
		"debug_peer_list = example.com, 192.0.2.0/24\nmydomain = example.net\n"+
		"relay_domains = $mydomain\n")
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := New(cfg, "debug_peer_list", Host, maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	check(t, dl, []probe{
		{"example.com", "", true},
		{"a.example.com", "", false}, // debug_peer_list no longer in the style list
		{"unknown", "192.0.2.9", true},
	})
	rl, err := New(cfg, "relay_domains", Domain, maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	check(t, rl, []probe{{"example.net", "", true}, {"EXAMPLE.net", "", true}, {"a.example.net", "", false}})
	bl, err := New(cfg, "smtpd_forbid_bare_newline_exclusions", Host, maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Close()
	check(t, bl, []probe{{"a.example.org", "192.0.2.1", true}})
}

// mynetworks-style lists: addresses, networks, bracketed IPv6, first match
// wins, "!" excludes.
func TestHostAddresses(t *testing.T) {
	l := mustParse(t, "mynetworks",
		"!192.168.1.13, 192.168.1.0/24 [2001:db8::]/32, [::1] [fe80::1/128] 127.0.0.1 !10.0.0.0/8 0.0.0.0/0", Host, true)
	check(t, l, []probe{
		{"unknown", "192.168.1.13", false},
		{"unknown", "192.168.1.14", true},
		{"unknown", "2001:db8:1::5", true},
		{"unknown", "2001:db9::5", false},
		{"unknown", "::1", true},
		{"unknown", "fe80::1", true},
		{"unknown", "127.0.0.1", true},
		{"unknown", "::ffff:127.0.0.1", true}, // IPv4-mapped: matched as IPv4
		{"unknown", "10.1.2.3", false},
		{"unknown", "8.8.8.8", true},
		{"unknown", "2001:4860::8888", false}, // 0.0.0.0/0 is IPv4 only
		{"unknown", "", false},
	})
	all6 := mustParse(t, "mynetworks", "[::]/0", Host, true)
	check(t, all6, []probe{{"x", "2001:db8::1", true}, {"x", "192.0.2.1", false}})
}

// The name is tried before the address for each pattern, so an earlier
// name pattern decides even when a later address pattern would not.
func TestHostNameThenAddress(t *testing.T) {
	l := mustParse(t, "debug_peer_list", "!bad.example.com, example.com, 192.0.2.1", Host, true)
	check(t, l, []probe{
		{"bad.example.com", "192.0.2.1", false},
		{"x.bad.example.com", "192.0.2.1", false},
		{"good.example.com", "198.51.100.1", true},
		{"unknown", "192.0.2.1", true},
		{"", "192.0.2.1", true},
		{"unknown", "192.0.2.2", false},
	})
}

func TestStringList(t *testing.T) {
	l := mustParse(t, "mydestination", "$myhostname, Example.COM .example.net 192.0.2.1", String, true)
	check(t, l, []probe{
		{"example.com", "", true},
		{"EXAMPLE.com", "", true},
		{"mail.example.com", "", false}, // no parent matching in a string list
		{"mail.example.net", "", false},
		{".example.net", "", true},
		{"$myhostname", "", true}, // expansion is config's job
		{"192.0.2.1", "", true},   // text, not an address
	})
}

func TestAddrList(t *testing.T) {
	l := mustParse(t, "x", "192.0.2.1 [2001:db8::1] 198.51.100.0/24", Addr, false)
	check(t, l, []probe{
		{"192.0.2.1", "192.0.2.2", false}, // the name is never looked at
		{"", "192.0.2.1", true},
		{"", "2001:db8::1", true},
		{"", "198.51.100.7", true},
	})
	for _, bad := range []string{"example.com", "1.2.3", "[1.2.3.4", "[1.2.3.4]x", "1.2.3.4/33", "[::1]/129", "1.2.3.4/24", "01.2.3.4"} {
		if _, err := ParseStyle("x", bad, Addr, false, maps.DefaultOptions()); err == nil {
			t.Errorf("Addr list %q: no error", bad)
		}
	}
}

// The diagnostics of cidr_match_parse(), naming the parameter.
func TestBadPatterns(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"1.2.3.4/24", `mynetworks: non-null host address bits in "1.2.3.4/24", perhaps you should use "1.2.3.0/24" instead`},
		{"[2001:db8::1]/32", `mynetworks: non-null host address bits in "2001:db8::1/32", perhaps you should use "2001:db8::/32" instead`},
		{"1.2.3.0/33", `mynetworks: bad mask length in "1.2.3.0/33"`},
		{"1.2.3.0/", `mynetworks: bad mask value in "1.2.3.0/"`},
		{"1.2.3.0/-1", `mynetworks: bad mask value in "1.2.3.0/-1"`},
		{"1.2.3.0/99999999999999999999", `mynetworks: bad mask length in "1.2.3.0/99999999999999999999"`},
		{"1.2.300.0/24", `mynetworks: bad network value in "1.2.300.0/24"`},
		{"[1.2.3.4", `mynetworks: missing ']' character after "[1.2.3.4"`},
		{"[1.2.3.4]5", `mynetworks: garbage after "[1.2.3.4]"`},
		{"[::1%1]", `mynetworks: bad address pattern: "::1%1"`}, // no zones
		{"[fe80::1]", ""},
		{"[1::2::3]", `mynetworks: bad address pattern: "1::2::3"`},
		{"[1.2.3.4/8]", `mynetworks: non-null host address bits in "1.2.3.4/8", perhaps you should use "1.0.0.0/8" instead`},
		{"2001:db8::/32", `mynetworks: 2001:db8::/32: unsupported dictionary type: 2001:db8::/32`},
		{"!", `mynetworks: no pattern after '!'`},
		{"a, # note", `mynetworks: #comment after other text is not allowed: "a, # note"`},
		{"nosuch:/x", `mynetworks: nosuch:/x: unsupported dictionary type: nosuch:/x`},
		{"192.168.10", `mynetworks: bad address pattern: "192.168.10" (a network is written as address/length, e.g. 192.168.10.0/24)`},
		{"!192.168.1.300", `mynetworks: bad address pattern: "192.168.1.300" (a network is written as address/length, e.g. 192.168.10.0/24)`},
		{"010.1.2.3", `mynetworks: bad address pattern: "010.1.2.3" (a network is written as address/length, e.g. 192.168.10.0/24)`},
		{"host-1.example", ""},
	} {
		l, err := ParseStyle("mynetworks", tc.value, Host, true, maps.DefaultOptions())
		if tc.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.value, err)
			} else {
				l.Close()
			}
			continue
		}
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: error %v, want %s", tc.value, err, tc.want)
		}
	}
	// A Domain list never reads addresses, as domain_list in Postfix.
	if _, err := ParseStyle("relay_domains", "1.2.3.4/24", Domain, true, maps.DefaultOptions()); err != nil {
		t.Errorf("Domain list: %v", err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// "/file/name" patterns: one or more per line, comment lines, continuation
// lines, nested files, and "!" in front of a file negating each entry.
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	inner := filepath.Join(dir, "inner")
	outer := filepath.Join(dir, "outer")
	writeFile(t, inner, "# inner\n!10.0.0.1\n10.0.0.0/8\n")
	writeFile(t, outer, "# networks\n\n192.0.2.0/24, [2001:db8::]/32\n  198.51.100.1\n"+inner+"\n")
	l := mustParse(t, "mynetworks", outer+" 127.0.0.1", Host, true)
	check(t, l, []probe{
		{"unknown", "192.0.2.7", true},
		{"unknown", "2001:db8::7", true},
		{"unknown", "198.51.100.1", true},
		{"unknown", "10.0.0.1", false},
		{"unknown", "10.0.0.2", true},
		{"unknown", "127.0.0.1", true},
		{"unknown", "203.0.113.1", false},
	})
	neg := mustParse(t, "mynetworks", "!"+inner+" 0.0.0.0/0", Host, true)
	check(t, neg, []probe{
		{"unknown", "10.0.0.1", true}, // "!!10.0.0.1"
		{"unknown", "10.0.0.2", false},
		{"unknown", "192.0.2.1", true},
	})

	self := filepath.Join(dir, "self")
	writeFile(t, self, self+"\n")
	if _, err := ParseStyle("mynetworks", self, Host, true, maps.DefaultOptions()); err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Errorf("self-including file: %v", err)
	}
	orphan := filepath.Join(dir, "orphan")
	writeFile(t, orphan, "  !10.0.0.1\n10.0.0.0/8\n")
	if _, err := ParseStyle("mynetworks", orphan, Host, true, maps.DefaultOptions()); err == nil || !strings.Contains(err.Error(), "line 1: logical line must not start with whitespace") {
		t.Errorf("orphan continuation: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "10.0.0.0/8\n\n10.0.0.1/8\n")
	if _, err := ParseStyle("mynetworks", bad, Host, true, maps.DefaultOptions()); err == nil || err.Error() != bad+`, line 3: mynetworks: non-null host address bits in "10.0.0.1/8", perhaps you should use "10.0.0.0/8" instead` {
		t.Errorf("bad line in file: %v", err)
	}
}

// Tables: the value is ignored, a key that is present matches; fixed
// tables are asked for parent domains in the list's style, pattern tables
// for the whole name; a failing table is an error, not a non-match.
func TestTables(t *testing.T) {
	dir := t.TempDir()
	cidr := filepath.Join(dir, "nets.cidr")
	writeFile(t, cidr, "192.0.2.0/24 REJECT\n")
	re := filepath.Join(dir, "names.re")
	writeFile(t, re, "/^mx[0-9]+\\.example\\.org$/ whatever\n")
	opts := maps.DefaultOptions()
	opts.TrustedUIDs = []int{os.Getuid()}
	l, err := ParseStyle("mynetworks", "inline:{example.com=ignored, .example.net=x} cidr:"+cidr+" regexp:"+re, Host, true, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check(t, l, []probe{
		{"example.com", "", true},
		{"a.b.example.com", "", true}, // parent style: b.example.com, example.com
		{"a.example.net", "", false},  // ".example.net" is not a parent-style key
		{"unknown", "192.0.2.200", true},
		{"mx12.example.org", "", true},
		{"a.mx12.example.org", "", false}, // pattern tables see the whole name only
	})
	strict, err := ParseStyle("x", "inline:{example.com=1, .example.net=1}", Domain, false, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	check(t, strict, []probe{
		{"example.com", "", true},
		{"a.example.com", "", false},
		{"a.example.net", "", true},
		{"example.net", "", false},
	})
	str, err := ParseStyle("mydestination", "inline:{example.com=1}", String, true, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer str.Close()
	check(t, str, []probe{{"EXAMPLE.COM", "", true}, {"a.example.com", "", false}})

	fail, err := ParseStyle("mynetworks", "127.0.0.1 fail:down", Host, true, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer fail.Close()
	check(t, fail, []probe{{"unknown", "127.0.0.1", true}}) // decided before the table
	_, err = fail.Match("unknown", addr("192.0.2.1"))
	var le *LookupError
	if !errors.As(err, &le) || le.Origin != "mynetworks" || le.Table != "fail:down" ||
		!strings.HasPrefix(err.Error(), "mynetworks: fail:down: table lookup problem: ") {
		t.Errorf("failing table: %v", err)
	}
	if ok, err := fail.MatchDomain(""); ok || err != nil {
		t.Errorf("empty name against a table: %v %v", ok, err)
	}
}

func TestUTF8Fold(t *testing.T) {
	opts := maps.DefaultOptions()
	opts.UTF8 = true
	l, err := ParseStyle("relay_domains", "ÉXAMPLE.com", Domain, true, opts)
	if err != nil {
		t.Fatal(err)
	}
	check(t, l, []probe{{"éxample.COM", "", true}, {"mail.ÉXAMPLE.COM", "", true}})
	bad, err := ParseStyle("x", "\xff.example", Domain, false, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Invalid UTF-8 is not folded into U+FFFD, which would make any two
	// invalid names equal.
	check(t, bad, []probe{{"\xff.EXAMPLE", "", true}, {"\x80.example", "", false}, {"\uFFFD.example", "", false}})
}

func TestEmptyAndKinds(t *testing.T) {
	l := mustParse(t, "relay_domains", " ,, ", Domain, true)
	if !l.Empty() {
		t.Error("blank list not empty")
	}
	check(t, l, []probe{{"example.com", "", false}})
	if _, err := ParseStyle("x", "a", Kind(9), true, maps.DefaultOptions()); err == nil {
		t.Error("bad kind accepted")
	}
	for k, s := range map[Kind]string{Host: "namadr_list", Domain: "domain_list", Addr: "addr_list", String: "string_list", Kind(7): "Kind(7)"} {
		if k.String() != s {
			t.Errorf("%d: %q", int(k), k.String())
		}
	}
}
