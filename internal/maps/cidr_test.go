package maps

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCIDRPostfixVector(t *testing.T) {
	runVector(t, "cidr", "dict_cidr", nil)
}

func TestCIDRLookups(t *testing.T) {
	tab := parseCIDRSource("t", []byte(strings.Join([]string{
		"if 172.16.0.0/12",
		"if !172.16.1.0/24",
		"172.16.2.1 inner",
		"endif",
		"endif",
		"192.168.0.0/16 private",
		"!10.0.0.0/8 not-ten",
		"10.1.2.3 host",
		"2001:db8::/32 doc",
		"::ffff:1.2.3.0/120 mapped",
		"0.0.0.0/0 v4-default",
	}, "\n")))
	if len(tab.warnings) != 0 {
		t.Fatalf("warnings %q", tab.warnings)
	}
	for key, want := range map[string]string{
		"192.168.3.4":    "private",
		"10.1.2.3":       "host",
		"8.8.8.8":        "not-ten",
		"2001:db8::5":    "doc",
		"::ffff:1.2.3.4": "mapped",
		"1.2.3.4":        "not-ten",
		"172.16.2.1":     "inner",
		"172.16.1.1":     "not-ten",
		"::1":            "",
		"junk":           "",
		"[10.1.2.3]":     "",
		"10.1.2.03":      "",
		"fe80::1%lo":     "",
	} {
		got, found, err := tab.Lookup(key)
		if err != nil || found != (want != "") || got != want {
			t.Errorf("Lookup(%q) = %q, %v, %v; want %q", key, got, found, err, want)
		}
	}
}

func TestCIDRWarnings(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{"1.2.3.4/24 x", `non-null host address bits in "1.2.3.4/24", perhaps you should use "1.2.3.0/24" instead: skipping this rule`},
		{"::1.2.3.5/127 x", `perhaps you should use "::1.2.3.4/127" instead`},
		{"1::5/120 x", `perhaps you should use "1::/120" instead`},
		{"1.2.3.0/ x", `bad mask value in "1.2.3.0/"`},
		{"1.2.3.0/33 x", `bad mask length in "1.2.3.0/33"`},
		{"1.2.3.0/1x x", `bad mask value in "1.2.3.0/1x"`},
		{"1.2.300.0/24 x", `bad network value in "1.2.300.0/24"`},
		{"1.2.3 x", `bad address pattern: "1.2.3"`},
		{"1.2.3.4", "no lookup result"},
		{"! R", `bad address pattern: "R"`},
		{"[1.2.3.4 x", `missing ']' character after "[1.2.3.4"`},
		{"[1.2.3.4]x x", `garbage after "[1.2.3.4]"`},
		{"endif", "ENDIF without IF: skipping this rule"},
		{"if", "no address pattern: skipping this rule"},
		{"if 1.2.3.0/24 x", `bad mask value in "1.2.3.0/24 x"`},
		{"if 1.2.3.0/24", "line 1: IF has no matching ENDIF"},
	} {
		tab := parseCIDRSource("t", []byte(c.line))
		if !strings.Contains(strings.Join(tab.warnings, "\n"), "cidr map t, line 1: ") ||
			!strings.Contains(strings.Join(tab.warnings, "\n"), c.want) {
			t.Errorf("%q: warnings %q, want %q", c.line, tab.warnings, c.want)
		}
	}
}

func TestCIDROpen(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c")
	if err := os.WriteFile(p, []byte("1.2.3.0/24 ok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tab, err := Open("cidr:"+p, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if !tab.Pattern() {
		t.Errorf("cidr table is not a pattern table")
	}
	if v, _, _ := tab.Lookup("1.2.3.9"); v != "ok" {
		t.Errorf("Lookup = %q", v)
	}
	if err := os.Chmod(p, 0o664); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("cidr:"+p, DefaultOptions()); err == nil {
		t.Errorf("group-writable cidr table opened")
	}
}

func FuzzCIDRTable(f *testing.F) {
	for _, s := range []string{
		"1.2.3.0/24 a", "!::/0 b", "if 10.0.0.0/8\n10.1.2.3 c\nendif", "[1.2.3.4]/32 d", "[::1/128] e",
		"! ! 0.0.0.0/0 f", "1.2.3.4/24 g", "if !\n!", "::ffff:1.2.3.4/128 h\n  continued",
	} {
		f.Add([]byte(s), "1.2.3.4")
	}
	f.Fuzz(func(t *testing.T, src []byte, key string) {
		tab := parseCIDRSource("f", src)
		for _, r := range tab.rules {
			if r.op != opEndif && (!r.prefix.IsValid() || r.prefix.Masked() != r.prefix) {
				t.Fatalf("rule with invalid or non-canonical network %v", r.prefix)
			}
		}
		v, found, err := tab.Lookup(key)
		if err != nil || (!found && v != "") {
			t.Fatalf("Lookup(%q) = %q, %v, %v", key, v, found, err)
		}
		if found {
			if _, ok := parseCIDRKey(key); !ok {
				t.Fatalf("non-address key %q matched", key)
			}
		}
	})
}
