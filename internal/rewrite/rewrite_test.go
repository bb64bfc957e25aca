package rewrite

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"moat/internal/config/configtest"
	"moat/internal/maps"
	"moat/internal/queue"
)

// base fixes the names the defaults refer to ($myorigin is $myhostname).
const base = "myhostname = mail.example.com\nmydomain = example.com\n" +
	"mydestination = $myhostname, localhost.localdomain\ninet_interfaces = loopback-only\n"

func newRewriter(t *testing.T, mainCF string) (*Rewriter, *[]string) {
	t.Helper()
	cfg := configtest.Load(t, base+mainCF)
	var warnings []string
	opts := maps.DefaultOptions()
	opts.Warn = func(m string) { warnings = append(warnings, m) }
	r, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r, &warnings
}

// rcpts rewrites one envelope and returns its recipients as
// "address<orig" (or just "address" when unchanged).
func rcpts(t *testing.T, r *Rewriter, sender string, to ...string) (string, []string, error) {
	t.Helper()
	env := queue.Envelope{Sender: sender}
	for _, a := range to {
		env.Recipients = append(env.Recipients, queue.Recipient{Address: a})
	}
	err := r.Envelope(&env)
	var out []string
	for _, rc := range env.Recipients {
		if rc.Orig != "" {
			out = append(out, rc.Address+"<"+rc.Orig)
		} else {
			out = append(out, rc.Address)
		}
	}
	return env.Sender, out, err
}

// The lookup order of Postfix's global/mail_addr_find.ref, default
// strategy, external keys: the cases that apply to an envelope address.
func TestFindPostfixVectors(t *testing.T) {
	type c struct{ addr, value, ext string }
	for _, tc := range []struct {
		table string
		cases []c
	}{
		{`inline:{plain1@1.example=plain2@2.example,{"aa bb"@cc.example="dd ee"@dd.example}}`, []c{
			{"plain1@1.example", "plain2@2.example", ""},
			{"aa bb@cc.example", `"dd ee"@dd.example`, ""},
			{"plain1+ext@1.example", "plain2@2.example", "+ext"},
			{"aa bb+ax bx@cc.example", `"dd ee"@dd.example`, "+ax bx"},
		}},
		{`inline:{"a@b"=foo@example,"a.b."=bar@example}`, []c{
			{"a@b@localhost.localdomain", "foo@example", ""},
			{"a@b+ext@localhost.localdomain", "foo@example", "+ext"},
			{"a.b.@localhost.localdomain", "bar@example", ""},
		}},
		{`inline:{plain1@1.example=plain2@2.example,@3.example=plain4@4.example,plain5@3.example=plain6@6.example}`, []c{
			{"plain1+ext@1.example", "plain2@2.example", "+ext"},
			{"plain2@2.example", "", ""},
			{"plain3@3.example", "plain4@4.example", ""},
			{"plain5@3.example", "plain6@6.example", ""},
		}},
		{`inline:{ab=foo@example,@localhost.localdomain=@bar.example}`, []c{
			{"ab@localhost.localdomain", "foo@example", ""},
			{"cd@localhost.localdomain", "@bar.example", ""},
			// The bare local part is only for local domains.
			{"ab@elsewhere.example", "", ""},
			// $myorigin is local for this purpose.
			{"ab@mail.example.com", "foo@example", ""},
		}},
	} {
		r, _ := newRewriter(t, "recipient_delimiter = +\nvirtual_alias_maps = "+tc.table+"\n")
		for _, k := range tc.cases {
			f, ok, err := r.find.Find(r.virtual, k.addr)
			if err != nil {
				t.Fatalf("%s: %v", k.addr, err)
			}
			if !ok {
				f = Found{}
			}
			if f.Value != k.value || f.Ext != k.ext {
				t.Errorf("%s in %s: (%q, %q), want (%q, %q)", k.addr, tc.table, f.Value, f.Ext, k.value, k.ext)
			}
		}
	}
}

func TestSplitAddr(t *testing.T) {
	f := &Finder{Delim: "+-", DoubleBounce: "double-bounce"}
	for in, want := range map[string][2]string{
		"user+ext@x":        {"user@x", "+ext"},
		"user-ext@x":        {"user@x", "-ext"},
		"user+@x":           {"user@x", "+"},
		"+user@x":           {"", ""},
		"user@x":            {"", ""},
		"owner-list@x":      {"", ""},
		"list-request@x":    {"", ""},
		"postmaster@x":      {"", ""},
		"Double-Bounce@x":   {"", ""},
		"MAILER-DAEMON":     {"", ""},
		"a+b+c@x":           {"a@x", "+b+c"},
		"bare+ext":          {"bare", "+ext"},
		"x-request-more@ex": {"x@ex", "-request-more"},
	} {
		b, e := f.strip(in)
		if b != want[0] || e != want[1] {
			t.Errorf("strip(%q) = %q, %q; want %q, %q", in, b, e, want[0], want[1])
		}
	}
}

func TestCanonical(t *testing.T) {
	r, _ := newRewriter(t, `recipient_delimiter = +
sender_canonical_maps = inline:{ alice@example.org=alice.smith@example.org }
recipient_canonical_maps = inline:{ bob@example.org=robert@example.org }
canonical_maps = inline:{ @old.example=@new.example, robert@example.org=rob@example.org, loop1@x.example=loop2@x.example, loop2@x.example=loop1@x.example, self@x.example=SELF@x.example }
`)
	s, got, err := rcpts(t, r, "alice@example.org",
		"bob@example.org", "bob+tag@example.org", "carol+tag@old.example", "plain@example.org", "self@x.example")
	if err != nil {
		t.Fatal(err)
	}
	// sender_canonical first, then canonical_maps (which has nothing
	// for alice.smith).
	if s != "alice.smith@example.org" {
		t.Errorf("sender %q", s)
	}
	want := []string{
		// recipient_canonical, then canonical again on the result.
		"rob@example.org<bob@example.org",
		// propagate_unmatched_extensions = canonical (the default).
		"rob+tag@example.org<bob+tag@example.org",
		// @domain keeps the local part, extension included (the
		// extension was not stripped for the @domain lookup).
		"carol+tag@new.example<carol+tag@old.example",
		"plain@example.org",
		// A mapping to itself (case aside) stops.
		"SELF@x.example<self@x.example",
	}
	if !slices.Equal(got, want) {
		t.Errorf("recipients\n got %q\nwant %q", got, want)
	}
	// A loop ends after cleanup's ten rounds with a temporary error.
	_, _, err = rcpts(t, r, "", "loop1@x.example")
	var re *Error
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "unreasonable canonical_maps map nesting") {
		t.Errorf("loop: %v", err)
	}
}

func TestCanonicalClasses(t *testing.T) {
	r, _ := newRewriter(t, `canonical_classes = envelope_recipient
canonical_maps = inline:{ a@example.org=b@example.org }
`)
	s, got, err := rcpts(t, r, "a@example.org", "a@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if s != "a@example.org" || !slices.Equal(got, []string{"b@example.org<a@example.org"}) {
		t.Errorf("sender %q recipients %q", s, got)
	}
	if _, err := New(configtest.Load(t, base+"canonical_classes = envelope_bogus\n"), maps.DefaultOptions()); err == nil {
		t.Error("unknown class accepted")
	}
}

func TestNoPropagation(t *testing.T) {
	r, _ := newRewriter(t, `recipient_delimiter = +
propagate_unmatched_extensions =
canonical_maps = inline:{ a@example.org=b@example.org }
virtual_alias_maps = inline:{ v@example.org=w@example.org }
`)
	_, got, err := rcpts(t, r, "", "a+x@example.org", "v+y@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"b@example.org<a+x@example.org", "w@example.org<v+y@example.org"}; !slices.Equal(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestVirtualAlias(t *testing.T) {
	dir := t.TempDir()
	table := filepath.Join(dir, "virtual")
	src := `# virtual(5) examples
postmaster@hosted.example   postmaster
info@hosted.example         joe@example.net, jane@example.net
sales@hosted.example        info@hosted.example, boss@example.net
@catchall.example           catch@example.net
@rename.example             @renamed.example
keep@hosted.example         keep@hosted.example, copy@example.net
dup@hosted.example          joe@example.net, joe@example.net, JOE@example.net
quoted@hosted.example       "first last"@example.net
ext@hosted.example          target@example.net
`
	if err := os.WriteFile(table, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ := newRewriter(t, "recipient_delimiter = +\nvirtual_alias_maps = texthash:"+table+"\n")
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		// A bare user in a result gets @$myorigin.
		{[]string{"postmaster@hosted.example"}, []string{"postmaster@mail.example.com<postmaster@hosted.example"}},
		{[]string{"info@hosted.example"}, []string{"joe@example.net<info@hosted.example", "jane@example.net<info@hosted.example"}},
		// Recursive.
		{[]string{"sales@hosted.example"}, []string{"joe@example.net<sales@hosted.example", "boss@example.net<sales@hosted.example", "jane@example.net<sales@hosted.example"}},
		{[]string{"anyone@catchall.example"}, []string{"catch@example.net<anyone@catchall.example"}},
		{[]string{"u+x@rename.example"}, []string{"u+x@renamed.example<u+x@rename.example"}},
		// An address that maps to itself stays, once, and is not
		// looked up again.
		{[]string{"keep@hosted.example"}, []string{"keep@hosted.example", "copy@example.net<keep@hosted.example"}},
		// Duplicates (case aside) are dropped.
		{[]string{"dup@hosted.example"}, []string{"joe@example.net<dup@hosted.example"}},
		{[]string{"quoted@hosted.example"}, []string{"first last@example.net<quoted@hosted.example"}},
		// The unmatched extension is propagated.
		{[]string{"ext+tag@hosted.example"}, []string{"target+tag@example.net<ext+tag@hosted.example"}},
		// Not in the table: unchanged, no Orig.
		{[]string{"nobody@elsewhere.example"}, []string{"nobody@elsewhere.example"}},
		// Two original recipients that reach the same address are
		// both kept (enable_original_recipient = yes); the same one
		// twice is not.
		{[]string{"info@hosted.example", "joe@example.net", "joe@example.net"}, []string{
			"joe@example.net<info@hosted.example", "jane@example.net<info@hosted.example", "joe@example.net"}},
	} {
		_, got, err := rcpts(t, r, "", tc.in...)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestVirtualLimits(t *testing.T) {
	// A chain longer than virtual_alias_recursion_limit.
	r, _ := newRewriter(t, `virtual_alias_recursion_limit = 3
virtual_alias_maps = inline:{ a@x.example=b@x.example, b@x.example=c@x.example, c@x.example=d@x.example, d@x.example=e@x.example, p@x.example=q@x.example }
`)
	// cleanup_map1n counts lookups, the last one (which finds nothing)
	// included: two rewrites and a miss fit in 3.
	if _, got, err := rcpts(t, r, "", "c@x.example"); err != nil || !slices.Equal(got, []string{"e@x.example<c@x.example"}) {
		t.Errorf("two levels: %q %v", got, err)
	}
	_, _, err := rcpts(t, r, "", "b@x.example")
	if err == nil || !strings.Contains(err.Error(), "unreasonable virtual_alias_maps map nesting for b@x.example") {
		t.Errorf("three levels: %v", err)
	}
	// A loop is also caught by the recursion limit.
	r, _ = newRewriter(t, "virtual_alias_maps = inline:{ a@x.example=b@x.example, b@x.example=a@x.example }\n")
	if _, _, err := rcpts(t, r, "", "a@x.example"); err == nil || !strings.Contains(err.Error(), "nesting") {
		t.Errorf("loop: %v", err)
	}
	// More addresses than virtual_alias_expansion_limit.
	r, _ = newRewriter(t, `virtual_alias_expansion_limit = 2
virtual_alias_maps = inline:{ {list@x.example=a@y.example, b@y.example, c@y.example}, {two@x.example=a@y.example, b@y.example} }
`)
	if _, got, err := rcpts(t, r, "", "two@x.example"); err != nil || len(got) != 2 {
		t.Errorf("two: %q %v", got, err)
	}
	if _, _, err := rcpts(t, r, "", "list@x.example"); err == nil || !strings.Contains(err.Error(), "unreasonable virtual_alias_maps map expansion size") {
		t.Errorf("three: %v", err)
	}
	// A result longer than virtual_alias_address_length_limit.
	r, _ = newRewriter(t, "virtual_alias_address_length_limit = 10\nvirtual_alias_maps = inline:{ a@x.example=averylongaddress@y.example }\n")
	if _, _, err := rcpts(t, r, "", "a@x.example"); err == nil || !strings.Contains(err.Error(), "unreasonable virtual_alias_maps result") {
		t.Errorf("long: %v", err)
	}
}

// A table that fails is a temporary error, never "not found".
func TestLookupFailure(t *testing.T) {
	for _, param := range []string{"virtual_alias_maps", "canonical_maps", "recipient_canonical_maps"} {
		r, _ := newRewriter(t, param+" = fail:down\n")
		_, _, err := rcpts(t, r, "", "a@x.example")
		var re *Error
		if !errors.As(err, &re) || !strings.Contains(err.Error(), param+" map lookup problem for a@x.example") {
			t.Errorf("%s: %v", param, err)
		}
	}
	r, _ := newRewriter(t, "sender_canonical_maps = fail:down\n")
	if _, _, err := rcpts(t, r, "s@x.example", "a@x.example"); err == nil {
		t.Error("sender_canonical_maps failure ignored")
	}
	// The null sender is never looked up.
	if _, _, err := rcpts(t, r, "", "a@x.example"); err != nil {
		t.Errorf("null sender: %v", err)
	}
}

// Bare addresses are canonicalized as trivial-rewrite's local context does
// before any table is consulted.
func TestAppend(t *testing.T) {
	r, _ := newRewriter(t, "append_dot_mydomain = yes\n")
	s, got, err := rcpts(t, r, "user", "bob", "carol@host", "dave@[192.0.2.1]", "erin@example.org")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bob@mail.example.com<bob", "carol@host.example.com<carol@host", "dave@[192.0.2.1]", "erin@example.org"}
	if s != "user@mail.example.com" || !slices.Equal(got, want) {
		t.Errorf("sender %q recipients %q", s, got)
	}
}

func TestNIS(t *testing.T) {
	r, w := newRewriter(t, "virtual_alias_domains =\nvirtual_alias_maps = nis:mail.aliases, inline:{ a@x.example=b@x.example }\n")
	if _, got, err := rcpts(t, r, "", "a@x.example"); err != nil || !slices.Equal(got, []string{"b@x.example<a@x.example"}) {
		t.Errorf("%q %v", got, err)
	}
	if len(*w) != 1 || !strings.Contains((*w)[0], "NIS domain name not set") {
		t.Errorf("warnings %q", *w)
	}
	if _, err := New(configtest.Load(t, base+"virtual_alias_domains =\nvirtual_alias_maps = ldap:/etc/x\n"), maps.DefaultOptions()); err == nil {
		t.Error("an unsupported table type other than nis: was accepted")
	}
}

func TestSplitAddrs(t *testing.T) {
	for in, want := range map[string][]string{
		"a@x, b@y":                {"a@x", "b@y"},
		"a@x b@y,,c":              {"a@x", "b@y", "c"},
		`"first, last"@x, b`:      {`"first, last"@x`, "b"},
		"Joe <joe@x> (comment) b": {"Joe", "<joe@x>", "b"},
		"<a b@x>":                 {"<a b@x>"},
	} {
		if got := splitAddrs(in); !slices.Equal(got, want) {
			t.Errorf("splitAddrs(%q) = %q, want %q", in, got, want)
		}
	}
	if got := unquoteAddr(`"first \"x\" last"@x`); got != `first "x" last@x` {
		t.Errorf("unquote: %q", got)
	}
}

// receive_override_options = no_address_mappings leaves the tables alone
// but still canonicalizes bare addresses, as cleanup does.
func TestNoAddressMappings(t *testing.T) {
	r, _ := newRewriter(t, `receive_override_options = no_header_body_checks, no_address_mappings
canonical_maps = inline:{ a@x.example=b@x.example }
virtual_alias_maps = inline:{ a@x.example=c@x.example }
`)
	s, got, err := rcpts(t, r, "a@x.example", "a@x.example", "bare")
	if err != nil {
		t.Fatal(err)
	}
	if s != "a@x.example" || !slices.Equal(got, []string{"a@x.example", "bare@mail.example.com<bare"}) {
		t.Errorf("sender %q recipients %q", s, got)
	}
}

// enable_original_recipient = no: no Orig, and duplicates are by address
// alone.
func TestNoOriginalRecipient(t *testing.T) {
	r, _ := newRewriter(t, `enable_original_recipient = no
virtual_alias_maps = inline:{ a@x.example=c@x.example }
`)
	_, got, err := rcpts(t, r, "", "a@x.example", "c@x.example", "C@x.example")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"c@x.example"}) {
		t.Errorf("recipients %q", got)
	}
}

// Masquerading, with postconf(5)'s masquerade_domains examples.
func TestMasquerade(t *testing.T) {
	r, _ := newRewriter(t, `masquerade_domains = !keep.example.com foo.example.com example.com
masquerade_exceptions = root
`)
	for in, want := range map[string]string{
		"user@any.thing.foo.example.com":  "user@foo.example.com",
		"user@any.thing.else.example.com": "user@example.com",
		"user@example.com":                "user@example.com",
		"user@foo.example.com":            "user@foo.example.com",
		"user@x.keep.example.com":         "user@x.keep.example.com",
		"user@notexample.com":             "user@notexample.com",
		"root@host.example.com":           "root@host.example.com",
		"user@HOST.Example.COM":           "user@example.com",
	} {
		s, got, err := rcpts(t, r, in, in)
		if err != nil {
			t.Fatal(err)
		}
		// masquerade_classes' default leaves envelope recipients alone.
		if s != want || !slices.Equal(got, []string{in}) {
			t.Errorf("%s: sender %q recipients %q; want sender %q", in, s, got, want)
		}
	}
	r, _ = newRewriter(t, "masquerade_domains = example.com\nmasquerade_classes = envelope_recipient\n")
	if s, got, err := rcpts(t, r, "a@h.example.com", "b@h.example.com"); err != nil || s != "a@h.example.com" ||
		!slices.Equal(got, []string{"b@example.com<b@h.example.com"}) {
		t.Errorf("envelope_recipient: %q %q %v", s, got, err)
	}
	r, _ = newRewriter(t, "masquerade_domains = example.com\nmasquerade_exceptions = fail:down\n")
	if _, _, err := rcpts(t, r, "a@h.example.com"); err == nil {
		t.Error("masquerade_exceptions failure ignored")
	}
}
