package rewrite

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"moat/internal/maps"
)

func hdr(t *testing.T, r *Rewriter, ctx HeaderContext, in string) string {
	t.Helper()
	out, err := r.Header(ctx, in)
	if err != nil {
		t.Fatalf("Header(%q): %v", in, err)
	}
	return out
}

// Unqualified header addresses get the local context's @$myorigin and
// .$mydomain (trivial-rewrite's rewrite_tree), and everything around the
// address stays as written.
func TestHeaderCanonicalize(t *testing.T) {
	r, _ := newRewriter(t, "append_dot_mydomain = yes\nswap_bangpath = yes\nallow_percent_hack = yes\n")
	for _, tc := range []struct{ in, want string }{
		{"From: joe", "From: joe@mail.example.com"},
		{"From: Joe Public <joe>", "From: Joe Public <joe@mail.example.com>"},
		{"From: joe (Joe Public)", "From: joe@mail.example.com (Joe Public)"},
		{"To: a, b@host, c@d.example", "To: a@mail.example.com, b@host.example.com, c@d.example"},
		{"To: \"Smith, J\" <j>,\n\t(note) k", "To: \"Smith, J\" <j@mail.example.com>,\n\t(note) k@mail.example.com"},
		{"Cc: team: a, b@x.example;, c", "Cc: team: a@mail.example.com, b@x.example;, c@mail.example.com"},
		{"Cc: undisclosed-recipients:;", "Cc: undisclosed-recipients:;"},
		{"Reply-To: host!user", "Reply-To: user@host.example.com"},
		{"Reply-To: user%host.example", "Reply-To: user@host.example"},
		{"Sender: u@x.example.", "Sender: u@x.example"},
		{"Bcc: u@[192.0.2.1]", "Bcc: u@[192.0.2.1]"},
		{"To: \"a b\"", "To: \"a b\"@mail.example.com"},
		{"Resent-Reply-To: r", "Resent-Reply-To: r@mail.example.com"},
		{"To: <>", "To: <>"},
		// Not address headers, or not readable: left alone.
		{"Subject: joe", "Subject: joe"},
		{"Delivered-To: joe", "Delivered-To: joe"},
		{"Return-Path: <joe>", "Return-Path: <joe>"},
		{"From: Joe Public joe", "From: Joe Public joe"},
		{"From: \"unterminated <joe>", "From: \"unterminated <joe>"},
		{"From: <joe", "From: <joe"},
		{"From: a <b> <c>", "From: a <b> <c>"},
		{"From: joe @ host", "From: joe @ host"},
		{"From: <@route.example:joe@x.example>", "From: <@route.example:joe@x.example>"},
		{"From:", "From:"},
		{"To: ,,", "To: ,,"},
	} {
		if got := hdr(t, r, HeaderLocal, tc.in); got != tc.want {
			t.Errorf("Header(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

// Header classes: sender_canonical_maps reaches the sender headers only,
// recipient_canonical_maps the recipient headers, canonical_maps both,
// each as its *_classes parameter says; masquerading per
// masquerade_classes.
func TestHeaderClasses(t *testing.T) {
	r, _ := newRewriter(t, `sender_canonical_maps = inline:{ s@x.example=S@y.example }
recipient_canonical_maps = inline:{ r@x.example=R@y.example }
canonical_maps = inline:{ {joe@mail.example.com=Joe.Public@example.com}, c@x.example=C@y.example }
masquerade_domains = example.com
masquerade_classes = header_recipient
`)
	for _, tc := range []struct{ in, want string }{
		{"From: Joe <joe>", "From: Joe <Joe.Public@example.com>"},
		{"From: s@x.example, r@x.example, c@x.example", "From: S@y.example, r@x.example, C@y.example"},
		{"To: s@x.example, r@x.example, c@x.example", "To: s@x.example, R@y.example, C@y.example"},
		{"From: u@host.example.com", "From: u@host.example.com"},
		{"To: u@host.example.com", "To: u@example.com"},
	} {
		if got := hdr(t, r, HeaderLocal, tc.in); got != tc.want {
			t.Errorf("Header(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
	r2, _ := newRewriter(t, `canonical_maps = inline:{ c@x.example=C@y.example }
canonical_classes = envelope_sender, envelope_recipient
masquerade_domains = example.com
`)
	for _, tc := range []struct{ in, want string }{
		{"From: c@x.example", "From: c@x.example"},
		{"From: u@host.example.com", "From: u@example.com"},
		{"To: u@host.example.com", "To: u@example.com"},
	} {
		if got := hdr(t, r2, HeaderLocal, tc.in); got != tc.want {
			t.Errorf("Header(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

// The remote context rewrites nothing by default; with
// remote_header_rewrite_domain it qualifies with that domain and applies
// the maps.
func TestHeaderRemote(t *testing.T) {
	r, _ := newRewriter(t, "canonical_maps = inline:{ c@x.example=C@y.example }\n")
	if f := r.HeaderFunc(HeaderRemote); f != nil {
		t.Fatal("HeaderFunc(remote) without remote_header_rewrite_domain is not nil")
	}
	if r.HeaderFunc(HeaderLocal) == nil {
		t.Fatal("HeaderFunc(local) is nil")
	}
	r2, _ := newRewriter(t, "canonical_maps = inline:{ c@x.example=C@y.example }\nremote_header_rewrite_domain = domain.invalid\nappend_dot_mydomain = yes\n")
	f := r2.HeaderFunc(HeaderRemote)
	got, err := f("To: bob, c@x.example, u@host")
	if want := "To: bob@domain.invalid, C@y.example, u@host.domain.invalid"; err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
}

// A table that fails makes the header rewrite fail (the message is
// deferred), with the table's error inside.
func TestHeaderLookupError(t *testing.T) {
	r, _ := newRewriter(t, "")
	fail := errors.New("table down")
	r.canonical = NewMaps("canonical_maps", failTable{fail})
	_, err := r.Header(HeaderLocal, "From: joe@x.example")
	var re *Error
	if !errors.As(err, &re) || !errors.Is(err, fail) {
		t.Fatalf("err = %v", err)
	}
}

type failTable struct{ err error }

func (f failTable) Lookup(string) (string, bool, error) { return "", false, f.err }
func (failTable) Pattern() bool                         { return false }
func (failTable) Close() error                          { return nil }

// A rewritten address that would push its line past 998 bytes starts a
// folded line after the list comma.
func TestHeaderFoldLong(t *testing.T) {
	long := strings.Repeat("l", 600)
	r, _ := newRewriter(t, "canonical_maps = inline:{ a@x.example="+long+"@y.example }\n")
	in := "To: " + strings.Repeat("b", 500) + "@x.example, a@x.example"
	got := hdr(t, r, HeaderLocal, in)
	want := "To: " + strings.Repeat("b", 500) + "@x.example,\n\t" + long + "@y.example"
	if got != want {
		t.Fatalf("got %q", got)
	}
}

// local_header_rewrite_clients: permit_inet_interfaces by default; the
// other items as postconf(5) lists them.
func TestHeaderContextFor(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	other := netip.MustParseAddr("192.0.2.7")
	r, _ := newRewriter(t, "")
	for _, tc := range []struct {
		c    Client
		want HeaderContext
	}{{Client{Addr: lo}, HeaderLocal}, {Client{Addr: other}, HeaderRemote}, {Client{Addr: netip.MustParseAddr("::ffff:127.0.0.1")}, HeaderLocal}} {
		if got, _, err := r.HeaderContextFor(tc.c); err != nil || got != tc.want {
			t.Errorf("%v: %v, %v", tc.c.Addr, got, err)
		}
	}
	r2, warns := newRewriter(t, "mynetworks = 192.0.2.0/24\nlocal_header_rewrite_clients = bogus permit_mynetworks, permit_sasl_authenticated check_address_map inline:{198.51.100.1=x} inline:{198.51.100.9=y}\n")
	_ = warns
	for _, tc := range []struct {
		c    Client
		want HeaderContext
	}{
		{Client{Addr: lo}, HeaderRemote},
		{Client{Addr: other}, HeaderLocal},
		{Client{Addr: netip.MustParseAddr("203.0.113.1"), SASLAuthenticated: true}, HeaderLocal},
		{Client{Addr: netip.MustParseAddr("198.51.100.1")}, HeaderLocal},
		{Client{Addr: netip.MustParseAddr("198.51.100.2")}, HeaderRemote},
	} {
		got, w, err := r2.HeaderContextFor(tc.c)
		if err != nil || got != tc.want {
			t.Errorf("%v: %v, %v", tc.c.Addr, got, err)
		}
		if len(w) != 1 || !strings.Contains(w[0], "invalid request: bogus") {
			t.Errorf("warnings %q", w)
		}
	}
	r3, _ := newRewriter(t, "local_header_rewrite_clients = static:all\n")
	if got, _, _ := r3.HeaderContextFor(Client{Addr: other}); got != HeaderLocal {
		t.Errorf("static:all: %v", got)
	}
	r4, _ := newRewriter(t, "")
	r4.clients.items = []clientItem{{name: "check_address_map", spec: "fail:x", table: failTable{errors.New("down")}}}
	if _, _, err := r4.HeaderContextFor(Client{Addr: other}); err == nil {
		t.Error("lookup failure not reported")
	}
	_ = maps.DefaultOptions
}

// receive_override_options = no_address_mappings turns off the maps and
// masquerading for headers too, but not the canonicalization.
func TestHeaderNoAddressMappings(t *testing.T) {
	r, _ := newRewriter(t, "receive_override_options = no_address_mappings\ncanonical_maps = inline:{ joe@mail.example.com=x@y.example }\n")
	if got := hdr(t, r, HeaderLocal, "From: joe"); got != "From: joe@mail.example.com" {
		t.Fatalf("got %q", got)
	}
}

// A header of many addresses is rewritten in linear time, and one over
// header_address_token_limit is left alone.
func TestHeaderManyAddresses(t *testing.T) {
	r, _ := newRewriter(t, "header_address_token_limit = 100000\n")
	in := "To: " + strings.Repeat("a, ", 20000) + "a"
	start := time.Now()
	out := hdr(t, r, HeaderLocal, in)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if strings.Count(out, "a@mail.example.com") != 20001 {
		t.Errorf("not every address rewritten")
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > maxHeaderLine {
			t.Fatalf("line of %d bytes", len(line))
		}
	}
	r2, _ := newRewriter(t, "header_address_token_limit = 10\n")
	if got := hdr(t, r2, HeaderLocal, "To: a, b, c, d, e, f"); got != "To: a, b, c, d, e, f" {
		t.Errorf("over the token limit: %q", got)
	}
	if got := hdr(t, r2, HeaderLocal, "To: a, b"); got != "To: a@mail.example.com, b@mail.example.com" {
		t.Errorf("under the token limit: %q", got)
	}
}

// A bare user gets @$myorigin and then, when $myorigin has no dot,
// .$mydomain as well, in the envelope and in headers (rewrite_tree does
// both steps in one pass).
func TestCanonOriginWithoutDot(t *testing.T) {
	r, _ := newRewriter(t, "myorigin = mail\nappend_dot_mydomain = yes\n")
	s, rc, err := rcpts(t, r, "joe", "amy")
	if err != nil || s != "joe@mail.example.com" || len(rc) != 1 || rc[0] != "amy@mail.example.com<amy" {
		t.Fatalf("sender %q recipients %q, %v", s, rc, err)
	}
	if got := hdr(t, r, HeaderLocal, "From: joe"); got != "From: joe@mail.example.com" {
		t.Fatalf("header %q", got)
	}
}
