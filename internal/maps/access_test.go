package maps

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"moat/internal/testutil"
)

func TestAccessKeyOrder(t *testing.T) {
	parent := AccessOptions{ParentMatchesSubdomains: true, RecipientDelimiter: "+", NullKey: "<>"}
	dot := AccessOptions{RecipientDelimiter: "+-", NullKey: "<>"}
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"address, parent style", AddressKeys("User+Ext@Sub.Example.COM", parent),
			[]string{"user+ext@sub.example.com", "user@sub.example.com", "sub.example.com", "example.com", "com", "user+ext@", "user@"}},
		{"address, dot style", AddressKeys("user+ext@sub.example.com", dot),
			[]string{"user+ext@sub.example.com", "user@sub.example.com", "sub.example.com", ".example.com", ".com", "user+ext@", "user@"}},
		{"address without extension", AddressKeys("user@example.com", parent),
			[]string{"user@example.com", "example.com", "com", "user@"}},
		{"no delimiter configured", AddressKeys("user+ext@example.com", DefaultAccessOptions()),
			[]string{"user+ext@example.com", "example.com", "com", "user+ext@"}},
		{"several delimiters: the first one found splits", AddressKeys("a-b+c@x", dot),
			[]string{"a-b+c@x", "a@x", "x", "a-b+c@", "a@"}},
		{"owner- is not an extension with -", AddressKeys("owner-list@x", dot),
			[]string{"owner-list@x", "x", "owner-list@"}},
		{"-request is not an extension with -", AddressKeys("list-request@x", dot),
			[]string{"list-request@x", "x", "list-request@"}},
		{"leading delimiter does not split", AddressKeys("+x@d", parent),
			[]string{"+x@d", "d", "+x@"}},
		{"null sender", AddressKeys("", parent), []string{"<>"}},
		{"null sender, custom key", AddressKeys("", AccessOptions{NullKey: "null-sender"}), []string{"null-sender"}},
		{"unqualified", AddressKeys("postmaster", parent), []string{"postmaster"}},
		{"last @ splits", AddressKeys(`"a@b"@c.d`, parent),
			[]string{`"a@b"@c.d`, "c.d", "d", `"a@b"@`}},
		{"domain", DomainKeys("a.b.c", parent), []string{"a.b.c", "b.c", "c"}},
		{"domain, dot style", DomainKeys("a.b.c", dot), []string{"a.b.c", ".b.c", ".c"}},
		{"helo with trailing dot", DomainKeys("foo.", parent), []string{"foo."}},
		{"helo with trailing dot, dot style", DomainKeys("foo.", dot), []string{"foo.", "."}},
		{"empty domain", DomainKeys("", parent), nil},
		{"IPv4", AddrKeys("192.168.10.1"), []string{"192.168.10.1", "192.168.10", "192.168", "192"}},
		{"IPv6", AddrKeys("2001:DB8:0:0:1::5"), []string{"2001:db8::1:0:0:5", "2001:db8::1:0:0", "2001:db8::1:0", "2001:db8::1", "2001:db8:", "2001:db8", "2001"}},
		{"IPv6 loopback", AddrKeys("::1"), []string{"::1"}},
		{"IPv4-mapped", AddrKeys("::ffff:10.1.2.3"), []string{"10.1.2.3", "10.1.2", "10.1", "10"}},
		{"zone dropped", AddrKeys("fe80::1%eth0"), []string{"fe80::1", "fe80:", "fe80"}},
		{"not an address", AddrKeys("Unknown"), []string{"unknown"}},
	}
	for _, tc := range tests {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, tc.got, tc.want)
		}
	}
}

// recorder is a table that remembers what it was asked.
type recorder struct {
	pattern bool
	asked   []string
	answer  map[string]string
}

func (r *recorder) Lookup(k string) (string, bool, error) {
	r.asked = append(r.asked, k)
	v, ok := r.answer[k]
	return v, ok, nil
}
func (r *recorder) Pattern() bool { return r.pattern }
func (r *recorder) Close() error  { return nil }

// A pattern table (regexp, pcre, cidr) gets the whole string only.
func TestAccessPatternTable(t *testing.T) {
	o := AccessOptions{ParentMatchesSubdomains: true, RecipientDelimiter: "+"}
	r := &recorder{pattern: true}
	LookupAddress(r, "User+x@Example.com", o)
	LookupDomain(r, "a.b.c", o)
	LookupClient(r, "Host.Example.com", "192.168.1.2", o)
	LookupClient(r, "", "10.0.0.1", o)
	want := []string{"user+x@example.com", "a.b.c", "host.example.com", "192.168.1.2", "10.0.0.1"}
	if !slices.Equal(r.asked, want) {
		t.Errorf("pattern table asked %q\nwant %q", r.asked, want)
	}
	// A fixed table is asked until the first hit, and no further.
	f := &recorder{answer: map[string]string{"example.com": "DUNNO", "user@": "REJECT"}}
	res, err := LookupAddress(f, "user+x@example.com", o)
	if err != nil || res != (AccessResult{Key: "example.com", Value: "DUNNO", Found: true}) {
		t.Errorf("fixed table: %+v %v", res, err)
	}
	if want := []string{"user+x@example.com", "user@example.com", "example.com"}; !slices.Equal(f.asked, want) {
		t.Errorf("fixed table asked %q, want %q", f.asked, want)
	}
}

func TestAccessLookupError(t *testing.T) {
	fail, _ := Open("fail:x", DefaultOptions())
	if _, err := LookupClient(fail, "h", "1.2.3.4", DefaultAccessOptions()); err == nil {
		t.Error("a temporary error must reach the caller")
	}
}

// TestAccessSeedTables uses the seed's files as written, built as hash:.
func TestAccessSeedTables(t *testing.T) {
	open := func(src string) Table {
		t.Helper()
		tbl, err := Open("hash:"+buildIndex(t, t.TempDir(), src), DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tbl.Close() })
		return tbl
	}
	rejectClient := open("192.168.0.100 REJECT\n192.168.10 REJECT\n")
	rejectSender := open("spam@spam.com REJECT\nspam.org REJECT\n")
	okIPs := open("a.b.c.d OK\n")
	parent, dot := DefaultAccessOptions(), DefaultAccessOptions()
	dot.ParentMatchesSubdomains = false
	tests := []struct {
		name    string
		lookup  func() (AccessResult, error)
		wantKey string
	}{
		{"client exact", func() (AccessResult, error) { return LookupClient(rejectClient, "", "192.168.0.100", parent) }, "192.168.0.100"},
		{"client neighbour", func() (AccessResult, error) { return LookupClient(rejectClient, "", "192.168.0.101", parent) }, ""},
		{"client in partial network", func() (AccessResult, error) {
			return LookupClient(rejectClient, "mx.example.com", "192.168.10.77", parent)
		}, "192.168.10"},
		{"client outside", func() (AccessResult, error) {
			return LookupClient(rejectClient, "mx.example.com", "192.168.100.1", parent)
		}, ""},
		{"sender exact", func() (AccessResult, error) { return LookupAddress(rejectSender, "Spam@Spam.com", parent) }, "spam@spam.com"},
		{"sender other user of spam.com", func() (AccessResult, error) { return LookupAddress(rejectSender, "ham@spam.com", parent) }, ""},
		{"sender domain", func() (AccessResult, error) { return LookupAddress(rejectSender, "anyone@spam.org", parent) }, "spam.org"},
		{"sender subdomain, parent style", func() (AccessResult, error) { return LookupAddress(rejectSender, "x@mail.spam.org", parent) }, "spam.org"},
		{"sender subdomain, dot style", func() (AccessResult, error) { return LookupAddress(rejectSender, "x@mail.spam.org", dot) }, ""},
		{"helo", func() (AccessResult, error) { return LookupDomain(okIPs, "a.b.c.d", parent) }, "a.b.c.d"},
		{"helo other", func() (AccessResult, error) { return LookupDomain(okIPs, "b.c.d", parent) }, ""},
	}
	for _, tc := range tests {
		res, err := tc.lookup()
		if err != nil || res.Key != tc.wantKey || res.Found != (tc.wantKey != "") {
			t.Errorf("%s: %+v, %v; want key %q", tc.name, res, err, tc.wantKey)
		}
	}
}

// TestAccessPostfixACL replays the access-map cases of Postfix's
// smtpd/smtpd_acl.in against smtpd_check_access (continuation lines and
// all) and checks each decision of smtpd_acl.ref. The decision is the
// first word of the value found: REJECT or a 4xx/5xx code rejects; OK,
// DUNNO, a number or nothing found lets the mail through. DUNNO at a more
// specific key is what keeps the broader REJECT from applying.
func TestAccessPostfixACL(t *testing.T) {
	src := string(mustRead(t, filepath.Join(testutil.PostfixTests(t), "smtpd", "smtpd_check_access")))
	tbl, err := Open("hash:"+buildIndex(t, t.TempDir(), src), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	o := DefaultAccessOptions() // smtpd_acl.in keeps parent_domain_matches_subdomains
	rejects := func(res AccessResult) bool {
		if !res.Found {
			return false
		}
		w, _, _ := strings.Cut(strings.ToUpper(res.Value), " ")
		return w == "REJECT" || (len(w) == 3 && (w[0] == '4' || w[0] == '5'))
	}
	type step struct {
		kind, arg1, arg2, delim string
		reject                  bool
	}
	steps := []step{
		{kind: "helo", arg1: "foo.dunno.com", reject: true},
		{kind: "helo", arg1: "bar.dunno.com"},
		{kind: "helo", arg1: "foo.duuno.com"},
		{kind: "client", arg1: "foo.dunno.com", arg2: "131.155.210.17", reject: true},
		{kind: "client", arg1: "bar.dunno.com", arg2: "131.155.210.17"},
		{kind: "client", arg1: "bar.dunno.com", arg2: "131.155.210.19"},
		{kind: "client", arg1: "bar.duno.com", arg2: "131.155.210.17"},
		{kind: "client", arg1: "bar.duno.com", arg2: "131.155.210.19", reject: true},
		{kind: "client", arg1: "bar.duno.com", arg2: "44.33.22.11", reject: true},
		{kind: "client", arg1: "bar.duno.com", arg2: "44.33.22.55"},
		{kind: "client", arg1: "bar.duno.com", arg2: "44.33.44.33", reject: true},
	}
	for _, rcpt := range []string{"mail", "rcpt"} {
		steps = append(steps,
			step{kind: rcpt, arg1: "reject@dunno.domain", reject: true},
			step{kind: rcpt, arg1: "ok@dunno.domain"},
			step{kind: rcpt, arg1: "anyone@dunno.domain"},
			step{kind: rcpt, arg1: "bad-sender@dunno.domain"},
			step{kind: rcpt, arg1: "reject@reject.domain", reject: true},
			step{kind: rcpt, arg1: "ok@reject.domain"},
			step{kind: rcpt, arg1: "anyone@reject.domain", reject: true},
			step{kind: rcpt, arg1: "good-sender@reject.domain", reject: true},
			step{kind: rcpt, arg1: "reject@ok.domain", reject: true},
			step{kind: rcpt, arg1: "ok@ok.domain"},
			step{kind: rcpt, arg1: "anyone@ok.domain"},
			step{kind: rcpt, arg1: "bad-sender@ok.domain"},
		)
	}
	steps = append(steps,
		step{kind: "rcpt", arg1: "reject+ext@dunno.domain", delim: "+", reject: true},
		step{kind: "rcpt", arg1: "ok+ext@dunno.domain", delim: "+"},
		step{kind: "mail", arg1: "", reject: true},
	)
	for _, s := range steps {
		o.RecipientDelimiter = s.delim
		var res AccessResult
		var err error
		switch s.kind {
		case "helo":
			res, err = LookupDomain(tbl, s.arg1, o)
		case "client":
			res, err = LookupClient(tbl, s.arg1, s.arg2, o)
		default:
			res, err = LookupAddress(tbl, s.arg1, o)
		}
		if err != nil {
			t.Fatal(err)
		}
		if rejects(res) != s.reject {
			t.Errorf("%s %s %s: found %+v; want reject=%v", s.kind, s.arg1, s.arg2, res, s.reject)
		}
	}
}
