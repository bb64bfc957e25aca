package dns

import (
	"net/netip"
	"slices"
	"testing"
)

// FuzzParseFilter checks that no filter text panics the parser or the
// matcher, and that a filter that parses as a plain address matches that
// address and what it prints as.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"127.0.0.2", "127.0.0.[2..11]", "127.[0;1].0.[1;3..4]", "&0.0.0.4",
		"127.0.0.[]", "[0..255].[0..255].[0..255].[0..255]", "127.0.0.[3..2]", "1.2.3", "&::1", "[[", "]].."} {
		f.Add(s, uint32(0x7f000002))
	}
	f.Fuzz(func(t *testing.T, s string, a uint32) {
		flt, err := ParseFilter(s)
		if err != nil {
			return
		}
		addr := netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
		flt.Match(addr)
		if plain, err := netip.ParseAddr(s); err == nil && plain.Is4() && !flt.Match(plain) {
			t.Fatalf("%q does not match its own address", s)
		}
	})
}

// FuzzHosts checks that no hosts(5) text panics the parser and that every
// address it maps to a name is among that name's addresses.
func FuzzHosts(f *testing.F) {
	for _, s := range []string{"127.0.0.1 localhost\n::1 ip6-localhost ip6-loopback\n", "# c\n10.0.0.1\tA.Example. a # x\n",
		"fe80::1%eth0 link\n", "bad line\n1.2.3.4\n", "::ffff:1.2.3.4 mapped\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h := parseHosts(data)
		for a, n := range h.byAddr {
			as, ok := h.addrs(n)
			if !ok || !slices.Contains(as, a) {
				t.Fatalf("%s -> %q, but %q -> %v", a, n, n, as)
			}
		}
	})
}

// FuzzTXTText checks that undoing miekg/dns's TXT escapes never panics
// and leaves only what Postfix prints (ASCII ' ' to '~').
func FuzzTXTText(f *testing.F) {
	for _, s := range []string{`a\"b\\c\001d`, `\`, `\2`, `\25`, `\256x`, `\999`, "plain text", "\xff\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := txtText(s)
		if len(out) > len(s) {
			t.Fatalf("%q grew to %q", s, out)
		}
		for i := 0; i < len(out); i++ {
			if out[i] < ' ' || out[i] > '~' {
				t.Fatalf("%q gave unprintable %q", s, out)
			}
		}
	})
}
