package qmgr

import (
	"strings"
	"testing"
)

func TestParseTransport(t *testing.T) {
	cases := []struct{ value, domain, transport, nexthop string }{
		{"local:mx.test", "mx.test", "local", "mx.test"},
		{"smtp", "remote.example", "smtp", "remote.example"},
		{"smtp:[relay.example]:587", "remote.example", "smtp", "[relay.example]:587"},
		{"discard:", "remote.example", "discard", "remote.example"},
		{"error:5.7.1 go away", "x", "error", "5.7.1 go away"},
		{" relay ", "d", "relay", "d"},
	}
	for _, c := range cases {
		r := parseTransport(c.value, c.domain)
		if r.transport != c.transport || r.nexthop != c.nexthop {
			t.Errorf("parseTransport(%q, %q) = %+v, want %s / %s", c.value, c.domain, r, c.transport, c.nexthop)
		}
	}
}

func TestSplitDSN(t *testing.T) {
	cases := []struct{ def, text, dsn, rest string }{
		{"2.0.0", "example.com", "2.0.0", "example.com"},
		{"5.0.0", "5.7.1 no relaying", "5.7.1", "no relaying"},
		{"5.0.0", "4.3.2  try later", "4.3.2", "try later"},
		{"5.0.0", "3.1.1 not a class", "5.0.0", "3.1.1 not a class"},
		{"5.0.0", "5.1234.1 x", "5.0.0", "5.1234.1 x"},
		{"5.0.0", "5.1.1", "5.1.1", ""},
		{"2.0.0", "", "2.0.0", ""},
	}
	for _, c := range cases {
		dsn, rest := splitDSN(c.def, c.text)
		if dsn != c.dsn || rest != c.rest {
			t.Errorf("splitDSN(%q, %q) = %q, %q; want %q, %q", c.def, c.text, dsn, rest, c.dsn, c.rest)
		}
	}
}

// FuzzSplitDSN checks that a DSN is split off only when valid and that the
// text is never lost.
func FuzzSplitDSN(f *testing.F) {
	for _, s := range []string{"5.7.1 no", "2.0.0", "x", "4.4.4  y", "5.1.1.1 z", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		dsn, rest := splitDSN("5.0.0", text)
		if !validDSN(dsn) {
			t.Fatalf("splitDSN(%q) gave invalid status %q", text, dsn)
		}
		if dsn == "5.0.0" && rest == text {
			return
		}
		if !strings.HasPrefix(text, dsn) || !strings.HasSuffix(text, rest) {
			t.Fatalf("splitDSN(%q) = %q, %q: text changed", text, dsn, rest)
		}
	})
}
