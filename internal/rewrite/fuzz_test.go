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

// FuzzHeader: any header, rewritten, keeps its name and colon, keeps the
// same addresses in the same places with only their own bytes changed
// (white space may become a fold) and adds no line that is not a
// continuation. With no maps and no qualification only a trailing dot
// goes, and rewriting again changes nothing. (With append_dot_mydomain
// Postfix's own rewrite_tree is not idempotent: "x@y." loses its dot and
// only a second pass would append .$mydomain.)
func FuzzHeader(f *testing.F) {
	cfg := configtest.Load(f, base+`append_dot_mydomain = yes
swap_bangpath = yes
allow_percent_hack = yes
masquerade_domains = example.com
canonical_maps = inline:{ {joe@mail.example.com=Joe.Public@example.com}, {a@x.example="a b"@y.example}, {l@x.example=`+strings.Repeat("l", 900)+`@example.net} }
`)
	r, err := New(cfg, maps.DefaultOptions())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	idcfg := configtest.Load(f, base+"append_at_myorigin = no\nappend_dot_mydomain = no\n")
	id, err := New(idcfg, maps.DefaultOptions())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { id.Close() })
	for _, s := range []string{
		"From: joe", "To: Joe <joe>, a@x.example (c), \"q, r\" <l@x.example>", "Cc: g: a, b;, c",
		"From: <a", "To: host!u, u%v, x@y.", "To: (a(b)c) d", "Subject: joe", "To: \"a\\\"b\" <c@[1.2.3.4]>",
		"To: " + strings.Repeat("w", 300) + "@x.example,\n " + strings.Repeat("v", 300) + "@y, l@x.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		got, err := id.Header(HeaderLocal, h)
		if err != nil {
			t.Fatal(err)
		}
		// Without maps and qualification only a trailing dot goes.
		if squeeze(got) != squeeze(h) && strings.Count(got, ".") >= strings.Count(h, ".") {
			t.Fatalf("identity: %q became %q", h, got)
		}
		checkHeader(t, id, h, got, true)
		out, err := r.Header(HeaderLocal, h)
		if err != nil {
			t.Fatal(err)
		}
		checkHeader(t, r, h, out, false)
	})
}

// checkHeader verifies one rewrite of h into out.
func checkHeader(t *testing.T, r *Rewriter, h, out string, idem bool) {
	t.Helper()
	{
		if out == h {
			return
		}
		colon := strings.IndexByte(h, ':')
		if colon <= 0 || !strings.HasPrefix(out, h[:colon+1]) {
			t.Fatalf("name changed: %q -> %q", h, out)
		}
		if bareLines(out) > bareLines(h) {
			t.Fatalf("new non-continuation line: %q -> %q", h, out)
		}
		again, err := r.Header(HeaderLocal, out)
		if err != nil || (idem && again != out) {
			t.Fatalf("not idempotent: %q -> %q -> %q", h, out, again)
		}
		in, _ := findAddrs(h[colon+1:], r.tokenLimit)
		got, ok := findAddrs(out[colon+1:], r.tokenLimit)
		if !ok || len(got) != len(in) {
			t.Fatalf("addresses %d -> %d (%v): %q -> %q", len(in), len(got), ok, h, out)
		}
		vi, vo := h[colon+1:], out[colon+1:]
		pi, po := 0, 0
		for i := range in {
			if squeeze(vi[pi:in[i].start]) != squeeze(vo[po:got[i].start]) {
				t.Fatalf("text between addresses changed: %q -> %q", h, out)
			}
			pi, po = in[i].end, got[i].end
		}
		if vi[pi:] != vo[po:] {
			t.Fatalf("tail changed: %q -> %q", h, out)
		}
	}
}

// bareLines counts line breaks not followed by white space.
func bareLines(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' && (i+1 == len(s) || (s[i+1] != ' ' && s[i+1] != '\t')) {
			n++
		}
	}
	return n
}

// squeeze drops white space, which a fold may change.
func squeeze(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, s)
}
