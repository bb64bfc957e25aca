package mtasts

import (
	"strings"
	"testing"
	"time"
)

// FuzzParsePolicy: any body either fails or gives a policy that keeps the
// RFC 8461 §3.2 invariants the agent relies on.
func FuzzParsePolicy(f *testing.F) {
	f.Add(enforcePolicy)
	f.Add("version: STSv1\nmode: none\nmax_age: 1\n")
	f.Add("version: STSv1\nmode: testing\nmx: *.example.net\nx: y\nmax_age: 31557601")
	f.Fuzz(func(t *testing.T, text string) {
		p, err := ParsePolicy(text)
		if err != nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge {
			t.Fatalf("max_age %v", p.MaxAge)
		}
		if p.Mode != None && len(p.MX) == 0 {
			t.Fatalf("mode %v without mx", p.Mode)
		}
		for _, m := range p.MX {
			if m != strings.ToLower(m) || !validPattern(m) {
				t.Fatalf("mx %q", m)
			}
			// A pattern never matches a host with an extra label in
			// a wildcard's place, nor an empty name.
			if MatchMX(m, "") || MatchMX(m, "a.b."+strings.TrimPrefix(m, "*.")) {
				t.Fatalf("pattern %q matches too much", m)
			}
		}
		if p.Text != text || p.Expired(p.Fetched.Add(p.MaxAge)) != true {
			t.Fatal("Text or Expired wrong")
		}
		if p.MaxAge > 0 && p.Expired(p.Fetched.Add(p.MaxAge-time.Nanosecond)) {
			t.Fatal("expired early")
		}
	})
}

// FuzzParseTXT: a record that parses has a valid id, and is a candidate.
func FuzzParseTXT(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Add("v=STSv1 ; id=abc ; ext=1")
	f.Add("v=STSv1;id=a;id=b")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseTXT(s)
		if err != nil {
			if id != "" {
				t.Fatalf("id %q with error %v", id, err)
			}
			return
		}
		if !validID(id) || !IsSTSRecord(s) || !strings.Contains(s, "id="+id) {
			t.Fatalf("ParseTXT(%q) = %q", s, id)
		}
	})
}
