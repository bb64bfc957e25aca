package maps

import (
	"strings"
	"testing"
)

// TestInlinePatternTables: the inline form of regexp, pcre and cidr tables
// (Postfix 3.7), as smtpd_forbidden_commands' default uses it.
func TestInlinePatternTables(t *testing.T) {
	for _, c := range []struct {
		spec string
		hits map[string]bool
	}{
		{"regexp:{{/^[^A-Z]/ Bogus}, { /^X{2}$/ x }}", map[string]bool{"1A": true, "XX": true, "XXX": false, "EHLO": false}},
		{"pcre:{{/^X-/ no}, {/^a{2}b/ no}}", map[string]bool{"X-FOO": true, "aab": true, "ab": false}},
		{"cidr:{{192.0.2.0/24 OK}, {2001:db8::/32 OK}}", map[string]bool{"192.0.2.7": true, "2001:db8::1": true, "198.51.100.1": false}},
	} {
		tb, err := Open(c.spec, DefaultOptions())
		if err != nil {
			t.Fatalf("%s: %v", c.spec, err)
		}
		if !tb.Pattern() {
			t.Errorf("%s: not a pattern table", c.spec)
		}
		for key, want := range c.hits {
			if _, found, err := tb.Lookup(key); found != want || err != nil {
				t.Errorf("%s: Lookup(%q) = %v, %v", c.spec, key, found, err)
			}
		}
		tb.Close()
	}
	for _, bad := range []string{"regexp:{", "regexp:{{/a/ b}", "regexp:{/a/ b}}", "regexp:{}", "pcre:{x {/a/ b}}", "cidr:{{1.2.3.4/33 OK}"} {
		if tb, err := Open(bad, DefaultOptions()); err == nil {
			tb.Close()
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzInlinePatternTable(f *testing.F) {
	for _, s := range []string{"{{/^[^A-Z]/ Bogus}}", "{{/a{2}/ x}, {/b/ y}}", "{}", "{{}}", "{{/(/ x}}", "{{10.0.0.0/8 OK}}"} {
		f.Add(s, "GET")
	}
	f.Fuzz(func(t *testing.T, body, key string) {
		for _, typ := range []string{"regexp", "pcre", "cidr"} {
			tb, err := Open(typ+":"+body, DefaultOptions())
			if err != nil {
				continue
			}
			_, _, _ = tb.Lookup(strings.ToUpper(key))
			tb.Close()
		}
	})
}
