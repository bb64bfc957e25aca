package master

import (
	"context"
	"strings"
	"testing"
)

// FuzzServiceName checks that no master.cf inet service name makes the
// endpoint parser panic or yield an address net.Listen would misread.
func FuzzServiceName(f *testing.F) {
	for _, s := range []string{"smtp", "25", "127.0.0.1:2525", "[::1]:587", "mx.test.example:submission", "[::1", "::1:25", ":", "[]:", "a:b:c"} {
		f.Add(s)
	}
	all := interfaces{All: true}
	p := protocols{v4: true, v6: true}
	f.Fuzz(func(t *testing.T, name string) {
		host, port, err := splitServiceName(name)
		if err != nil {
			return
		}
		if !validPortWord(port) || strings.ContainsAny(host, "[]") && !strings.HasPrefix(name, "[") {
			t.Fatalf("%q: host %q port %q", name, host, port)
		}
		if !strings.ContainsAny(port, "0123456789") {
			return // a name: would consult /etc/services; keep the fuzzer local
		}
		eps, _, err := endpoints(context.Background(), name, all, p, noDNS)
		if err != nil {
			return
		}
		for _, e := range eps {
			if e.Network != "tcp4" && e.Network != "tcp6" {
				t.Fatalf("%q: network %q", name, e.Network)
			}
		}
	})
}

// FuzzParsePID checks the PID file reader never accepts a non-positive
// number (kill(2) with 0 or -1 would signal a whole process group).
func FuzzParsePID(f *testing.F) {
	for _, s := range []string{FormatPID(1), "42\n", "0", "-1", "", " 7 \nx"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pid, err := ParsePID(b)
		if err == nil && pid <= 0 {
			t.Fatalf("%q: pid %d", b, pid)
		}
	})
}
