package rewrite

import (
	"strings"
	"testing"

	"moat/internal/config/configtest"
	"moat/internal/maps"
	"moat/internal/queue"
)

// FuzzSplitAddrs: a table value of any shape splits into trimmed,
// non-empty elements without a panic, and each unquotes.
func FuzzSplitAddrs(f *testing.F) {
	for _, s := range []string{"a@x, b@y", `"first, last"@x b`, "Joe <joe@x> (c (nested)) b", `\`, `"unclosed`, "(", "<a b", "a\\,b,c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		for _, a := range splitAddrs(value) {
			if a == "" || strings.TrimSpace(a) != a {
				t.Fatalf("element %q of %q", a, value)
			}
			_ = unquoteAddr(a)
		}
	})
}

// FuzzEnvelope: any recipient address, rewritten through canonical and
// virtual alias tables that expand, loop and map to themselves, ends
// (within the limits) without a panic; every output recipient either kept
// its address or names the original in Orig.
func FuzzEnvelope(f *testing.F) {
	cfg := configtest.Load(f, base+`recipient_delimiter = +-
virtual_alias_recursion_limit = 20
virtual_alias_expansion_limit = 50
masquerade_domains = !keep.x.example x.example
masquerade_classes = envelope_sender, envelope_recipient
canonical_maps = inline:{ @old.example=@new.example, a@x.example=b@x.example }
virtual_alias_maps = inline:{ {list@x.example=a@y.example, b@y.example, list@x.example}, {loop@x.example=loop2@x.example}, {loop2@x.example=loop@x.example}, {@new.example=@final.example}, {b@x.example=user} }
`)
	r, err := New(cfg, maps.DefaultOptions())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	for _, s := range []string{"list@x.example", "loop@x.example", "a+b@x.example", "u-v@old.example", "bare", `"a b"@x.example`, "@", "a@b@localhost.localdomain", "owner-x@x.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		env := queue.Envelope{Sender: addr, Recipients: []queue.Recipient{{Address: addr}}}
		if err := r.Envelope(&env); err != nil {
			return
		}
		for _, rc := range env.Recipients {
			if rc.Orig == "" && rc.Address != addr {
				t.Fatalf("%q became %q without Orig", addr, rc.Address)
			}
			if rc.Orig != "" && rc.Orig != addr {
				t.Fatalf("Orig %q, want %q", rc.Orig, addr)
			}
		}
	})
}
