package matchlist_test

import (
	"fmt"
	"net/netip"

	"moat/internal/maps"
	"moat/internal/matchlist"
)

// permit_mynetworks: the client's name and address against mynetworks.
// postconf(5)'s second mynetworks example excludes one host of a network.
func ExampleList_Match() {
	l, err := matchlist.Parse("mynetworks", "!192.168.0.1, 192.168.0.0/28 [2001:db8::]/32", matchlist.Host, maps.DefaultOptions())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	for _, a := range []string{"192.168.0.1", "192.168.0.2", "192.168.0.16", "2001:db8::25"} {
		ok, err := l.Match("unknown", netip.MustParseAddr(a))
		fmt.Println(a, ok, err)
	}
	// Output:
	// 192.168.0.1 false <nil>
	// 192.168.0.2 true <nil>
	// 192.168.0.16 false <nil>
	// 2001:db8::25 true <nil>
}

// A network with host bits set is refused when the list is read, with
// Postfix's wording.
func ExampleParse_error() {
	_, err := matchlist.Parse("mynetworks", "192.168.1.1/24", matchlist.Host, maps.DefaultOptions())
	fmt.Println(err)
	// Output:
	// mynetworks: non-null host address bits in "192.168.1.1/24", perhaps you should use "192.168.1.0/24" instead
}
