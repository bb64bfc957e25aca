package master

import "testing"

// FuzzEndpointKey: the listener keys a master passes to its children
// round-trip, and any other string is refused or parsed without a panic.
func FuzzEndpointKey(f *testing.F) {
	f.Add("tcp4", "127.0.0.1:25")
	f.Add("tcp6", "[::1]:587")
	f.Add("unix", "private/anvil")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, network, addr string) {
		ep := endpoint{Network: network, Addr: addr}
		got, err := parseEndpointKey(ep.Key())
		if err != nil {
			return
		}
		if got.Key() != ep.Key() {
			t.Fatalf("key %q parsed back as %q", ep.Key(), got.Key())
		}
		for i := 0; i < len(network); i++ {
			if network[i] == ' ' {
				return // a network never has a space; only the key must round-trip
			}
		}
		if got != ep {
			t.Fatalf("%+v parsed back as %+v", ep, got)
		}
	})
}
