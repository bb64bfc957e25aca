package smtp

import (
	"testing"
)

func TestParseDestinations(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"example.com", []string{"example.com:25"}},
		{"example.com:587", []string{"example.com:587"}},
		{"[mail.example.com]", []string{"[mail.example.com]:25"}},
		{"[192.0.2.1]:2525", []string{"[192.0.2.1]:2525"}},
		{"192.0.2.1", []string{"[192.0.2.1]:25"}},
		{"[ipv6:2001:db8::1]:26", []string{"[2001:db8::1]:26"}},
		{"inet:[relay.example]:submission", []string{"[relay.example]:587"}},
		{"a.example, [b.example]:26 c.example", []string{"a.example:25", "[b.example]:26", "c.example:25"}},
	} {
		ds, err := ParseDestinations(c.in, 25)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		var got []string
		for _, d := range ds {
			got = append(got, d.String())
		}
		if len(got) != len(c.want) {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%q: got %q, want %q", c.in, got, c.want)
			}
		}
	}
	for _, bad := range []string{"", "[x", "[x]y", "host:", "host:0", "host:99999", "[]", "a@b", "host:no/such"} {
		if _, err := ParseDestinations(bad, 25); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseDestinations: any next hop parses or fails without a fault,
// and what parses renders to a form that parses to the same.
func FuzzParseDestinations(f *testing.F) {
	for _, s := range []string{"example.com", "[192.0.2.1]:2525", "[ipv6:2001:db8::1]", "a, b c", "inet:x:smtp", "[x]:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ds, err := ParseDestinations(s, 25)
		if err != nil {
			return
		}
		for _, d := range ds {
			again, err := ParseDestinations(d.String(), 25)
			if err != nil || len(again) != 1 || again[0] != d {
				t.Fatalf("%q: %+v renders %q, which parses to %+v (%v)", s, d, d.String(), again, err)
			}
		}
	})
}
