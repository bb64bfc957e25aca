package anvil

import (
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	good := []string{"CONNECT smtp 192.0.2.1", "DISCONNECT 127.0.0.1:2525 ::1", "MAIL s a",
		"RCPT s a", "NEWTLS s a", "NEWTLS_STATUS s a", "AUTH s a"}
	for _, l := range good {
		r, err := ParseRequest(l)
		if err != nil || r.String() != l {
			t.Errorf("%q: %+v %v", l, r, err)
		}
	}
	bad := []string{"", "CONNECT", "CONNECT smtp", "CONNECT smtp a b", "connect smtp a",
		"HELO smtp a", "CONNECT  a", "CONNECT smtp a\r", "CONNECT smtp \x00",
		"CONNECT " + strings.Repeat("x", 201) + " a", "CONNECT smtp\ta b"}
	for _, l := range bad {
		if r, err := ParseRequest(l); err == nil {
			t.Errorf("%q accepted: %+v", l, r)
		}
	}
}

func TestParseReply(t *testing.T) {
	for _, c := range []struct {
		line string
		want Reply
	}{{"OK 0 0", Reply{}}, {"OK 3 17", Reply{Count: 3, Rate: 17}}, {"ERR bad request", Reply{Err: "bad request"}}} {
		r, err := ParseReply(c.line)
		if err != nil || r != c.want || r.String() != c.line {
			t.Errorf("%q: %+v %v", c.line, r, err)
		}
	}
	for _, l := range []string{"", "OK", "OK 1", "OK 1 2 3", "OK -1 2", "OK +1 2", "OK 01 2",
		"OK 1 99999999999", "ERR ", "ok 1 2", "OK 1  2"} {
		if r, err := ParseReply(l); err == nil {
			t.Errorf("%q accepted: %+v", l, r)
		}
	}
}

// FuzzParseRequest: any line either fails or parses into a request whose
// wire form parses back to itself; the server's reply line is one line.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"CONNECT smtp 192.0.2.1", "DISCONNECT s ::1", "AUTH a b c", "", " ", "MAIL  x"} {
		f.Add(s)
	}
	tb := NewTable(Options{MaxEntries: 64})
	f.Fuzz(func(t *testing.T, line string) {
		r, err := ParseRequest(line)
		if err != nil {
			return
		}
		if r.String() != line {
			t.Fatalf("%q renders as %q", line, r.String())
		}
		rep := Apply(tb, r)
		if s := oneLine(rep.String()); strings.ContainsAny(s, "\r\n") {
			t.Fatalf("reply %q spans lines", s)
		}
		if tb.Len() > 64 {
			t.Fatalf("table over cap: %d", tb.Len())
		}
	})
}

// FuzzParseReply: a parsed reply renders back to the same line.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"OK 0 0", "OK 12 3", "ERR x", "OK 1073741824 0", "OK 1 -0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := ParseReply(line)
		if err != nil {
			return
		}
		if r.String() != line {
			t.Fatalf("%q renders as %q", line, r.String())
		}
	})
}
