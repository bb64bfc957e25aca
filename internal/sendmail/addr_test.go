package sendmail

import (
	"reflect"
	"strings"
	"testing"
)

func TestAddresses(t *testing.T) {
	for in, want := range map[string][]string{
		"user":     {"user"},
		"a@b, c@d": {"a@b", "c@d"},
		`"Joe, Q" <joe@x.org>, x@y (Comment, with comma)`: {"joe@x.org", "x@y"},
		"Team: a@b, c; d@e":          {"a@b", "c", "d@e"},
		"undisclosed-recipients:;":   nil,
		"<@relay.example:user@dest>": {"user@dest"},
		"user @ example.com":         {"user@example.com"},
		`"quoted user"@x`:            {"quoted user@x"},
		"Name <a@b":                  {"a@b"},
		"":                           nil,
		" , ,":                       nil,
	} {
		if got := Addresses(in); !reflect.DeepEqual(got, want) {
			t.Errorf("Addresses(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzAddresses(f *testing.F) {
	for _, s := range []string{"a@b, c", `"x,y" <a@b> (c) d`, "g: a, b;", "<@r:u@d>", `"\"`, "((a)b", "<<>>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Addresses(s)
		if len(got) > maxAddresses {
			t.Fatal("too many")
		}
		for _, a := range got {
			if a == "" || strings.ContainsAny(a, "\r\n") && !strings.Contains(s, "\"") {
				t.Fatalf("bad address %q from %q", a, s)
			}
		}
	})
}
