package smtpd

import (
	"strings"
	"testing"
)

func TestForbiddenCommands(t *testing.T) {
	h := newHarness(t, nil, nil, "")
	c := h.greeted()
	c.cmd("noop", "250 2.0.0 Ok") // lower case is not "Bogus"
	c.cmd(`{"json": 1}`, "221 2.7.0 Error: I can break rules, too. Goodbye.")
	c.closed()
	h.waitLog(`warning: non-SMTP command from ` + h.client + `: {"json": 1}`)
	for _, line := range []string{"POST /x HTTP/1.1", "Subject: hi", "1234"} {
		c = h.greeted()
		c.cmd(line, "221 2.7.0")
	}
	h2 := newHarness(t, map[string]string{"smtpd_forbidden_commands": "connect, pcre:{{/^X-/ no}, {/^a{2}b/ no}}"}, nil, "")
	c = h2.greeted()
	c.cmd("GET /", "500 5.5.2 Error: command not recognized")
	c.cmd("X-FOO", "221 2.7.0")
	c = h2.greeted()
	c.cmd("AAB", "221 2.7.0")
}

func TestInlinePatternTable(t *testing.T) {
	tb, err := inlinePatternTable("regexp", "{{/^[^A-Z]/ Bogus}, { /^X{2}$/ x }}")
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	for key, want := range map[string]bool{"1A": true, "XX": true, "XXX": false, "EHLO": false} {
		if _, found, err := tb.Lookup(key); found != want || err != nil {
			t.Errorf("Lookup(%q) = %v, %v", key, found, err)
		}
	}
	for _, bad := range []string{"", "{", "{{/a/ b}", "{/a/ b}}", "x"} {
		if tb, err := inlinePatternTable("regexp", bad); err == nil {
			tb.Close()
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzInlinePatternTable(f *testing.F) {
	for _, s := range []string{"{{/^[^A-Z]/ Bogus}}", "{{/a{2}/ x}, {/b/ y}}", "{}", "{{}}", "{{/(/ x}}"} {
		f.Add(s, "GET")
	}
	f.Fuzz(func(t *testing.T, body, key string) {
		for _, typ := range []string{"regexp", "pcre"} {
			tb, err := inlinePatternTable(typ, body)
			if err != nil {
				continue
			}
			_, _, _ = tb.Lookup(strings.ToUpper(key))
			tb.Close()
		}
	})
}
