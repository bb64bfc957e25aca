package qmgr

import (
	"path/filepath"
	"slices"
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

func TestLocalUser(t *testing.T) {
	cases := []struct{ addr, delim, user, ext string }{
		{"Alice@mx.test", "", "alice", ""},
		{"alice+tag@mx.test", "+", "alice", "tag"},
		{"alice+tag@mx.test", "", "alice+tag", ""},
		{"bob-x+y@mx.test", "+-", "bob", "x+y"},
		{`"a@b"@mx.test`, "", `"a@b"`, ""},
		{"a@b@mx.test", "", "a@b", ""},
		{"nodomain", "", "nodomain", ""},
		{"+tag@mx.test", "+", "", "tag"},
	}
	for _, c := range cases {
		local, _ := splitAddress(c.addr)
		user, ext := localUser(local, c.delim)
		if user != c.user || ext != c.ext {
			t.Errorf("localUser(%q, %q) = %q, %q; want %q, %q", c.addr, c.delim, user, ext, c.user, c.ext)
		}
	}
}

func TestSafeUser(t *testing.T) {
	for _, u := range []string{"alice", "a.b", ".hidden", "o'brien", "müller", "a b", strings.Repeat("x", 255)} {
		if !safeUser(u) {
			t.Errorf("safeUser(%q) = false, want true", u)
		}
	}
	for _, u := range []string{"", ".", "..", "a/b", "../x", "-rf", "a\x00b", "a\nb", "a\x7fb", "a\u0085b",
		"\xff", strings.Repeat("x", 256)} {
		if safeUser(u) {
			t.Errorf("safeUser(%q) = true, want false", u)
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

// FuzzLocalUser checks the property the local agent relies on: whatever
// the recipient, a name safeUser accepts is exactly one directory level
// below the spool.
func FuzzLocalUser(f *testing.F) {
	for _, s := range []string{"alice@mx.test", "../../etc@mx.test", "a+b@x", "-x@y", ".@x", "a/b@c", "\x00@x", "A\u00c9@x"} {
		f.Add(s, "+")
	}
	f.Fuzz(func(t *testing.T, addr, delim string) {
		local, domain := splitAddress(addr)
		if local+"@"+domain != addr && local != addr {
			t.Fatalf("splitAddress(%q) = %q, %q", addr, local, domain)
		}
		user, _ := localUser(local, delim)
		if !safeUser(user) {
			return
		}
		spool := "/var/mail"
		p := filepath.Join(spool, user)
		if filepath.Dir(p) != spool || filepath.Base(p) != user {
			t.Fatalf("user %q escapes the spool: %q", user, p)
		}
		if strings.ContainsAny(user, "\x00\r\n/") || strings.HasPrefix(user, "-") {
			t.Fatalf("unsafe user %q accepted", user)
		}
	})
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

func TestDeliveredTo(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"Delivered-To: A@x\r\nSubject: s\r\n\r\nDelivered-To: body@x\r\n", []string{"a@x"}},
		{"delivered-to : b@x\r\nDelivered-To:\r\n c@x\r\n\r\n", []string{"b@x", "c@x"}},
		{"Subject: none\r\n\r\n", nil},
		{"Delivered-To: eof@x", []string{"eof@x"}},
		{"", nil},
		{"X-Delivered-To: no@x\r\n\r\n", nil},
	}
	for _, c := range cases {
		got, err := deliveredTo(strings.NewReader(c.in))
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("deliveredTo(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// FuzzDeliveredTo checks that the header scan never fails on a readable
// message and only returns lowercased, trimmed values.
func FuzzDeliveredTo(f *testing.F) {
	for _, s := range []string{"Delivered-To: a@x\r\n\r\n", "Delivered-To:\r\n\tb@x\r\n", "x", "\r\n", "Delivered-To: " + strings.Repeat("y", 5000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := deliveredTo(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range got {
			if v != strings.ToLower(v) || v != strings.TrimSpace(v) {
				t.Fatalf("deliveredTo(%q) gave %q", in, v)
			}
		}
	})
}
