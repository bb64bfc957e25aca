package dns

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"moat/internal/maps"
	"moat/internal/testutil/dnsserver"
)

// zone is the data Postfix's DNS-dependent smtpd tests assume
// (shared/postfix-tests/MANIFEST.md), plus records for the cases below.
var zone = []string{
	"2.0.0.127.dnsbltest.porcupine.org. 60 IN A 127.0.0.2",
	`2.0.0.127.dnsbltest.porcupine.org. 60 IN TXT "DNS blocklist test"`,
	"3.0.0.127.dnsbltest.porcupine.org. 60 IN A 127.0.0.3",
	"3.0.0.127.dnsbltest.porcupine.org. 60 IN A 127.0.0.10",
	`3.0.0.127.dnsbltest.porcupine.org. 60 IN TXT "one" "two"`,
	`3.0.0.127.dnsbltest.porcupine.org. 60 IN TXT "three"`,
	"*.wild.porcupine.org. 60 IN A 127.0.0.2",
	"spike.porcupine.org. 3600 IN A 168.100.3.2",
	"spike.porcupine.org. 3600 IN AAAA 2604:8d00:0:1::3",
	"fist.porcupine.org. 3600 IN A 168.100.3.4",
	"nullmx.porcupine.org. IN MX 0 .",
	"nullmx.porcupine.org. IN A 168.100.3.5",
	"xn--1xa.porcupine.org. 3600 IN MX 10 spike.porcupine.org.",
	"porcupine.org. IN MX 10 b.porcupine.org.",
	"porcupine.org. IN MX 5 a.porcupine.org.",
	"porcupine.org. IN MX 10 c.porcupine.org.",
	"porcupine.org. IN MX 20 d.porcupine.org.",
	"porcupine.org. IN NS ns1.porcupine.org.",
	"alias.porcupine.org. IN CNAME spike.porcupine.org.",
	"deep.empty.porcupine.org. IN A 10.0.0.1",
	"badmx.porcupine.org. IN MX 10 -bad.example.",
	"mixmx.porcupine.org. IN MX 10 -bad.example.",
	"mixmx.porcupine.org. IN MX 20 good.porcupine.org.",
	"badowner.porcupine.org. IN CNAME -x.porcupine.org.",
	`esc.porcupine.org. IN TXT "a\"b\\c\001d" "second"`,
	// client names: 2 good, 5 no PTR, 6 forged, 4 forward lookup fails
	"1.0.0.127.in-addr.arpa. IN PTR localhost.test.",
	"localhost.test. IN A 127.0.0.1",
	"2.0.0.127.in-addr.arpa. IN PTR forged.test.",
	"forged.test. IN A 127.0.0.99",
	"4.0.0.127.in-addr.arpa. IN PTR slow.test.",
	"5.0.0.127.in-addr.arpa. IN PTR 1.2.3.4.",
	"6.0.0.127.in-addr.arpa. IN PTR gone.test.",
	"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. IN PTR six.test.",
	"six.test. IN AAAA ::1",
}

func start(t *testing.T, o Options) (*dnsserver.Server, *Resolver) {
	t.Helper()
	srv := dnsserver.Start(t, zone...)
	o.Servers = []string{srv.Addr()}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if !o.IPv4 && !o.IPv6 {
		o.IPv4, o.IPv6 = true, true
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return srv, r
}

func TestStatuses(t *testing.T) {
	srv, r := start(t, Options{})
	srv.Fail("servfail.porcupine.org", mdns.RcodeServerFailure)
	srv.Fail("refused.porcupine.org", mdns.RcodeRefused)
	srv.Fail("notimp.porcupine.org", mdns.RcodeNotImplemented)
	srv.Garble("garbled.porcupine.org")
	ctx := context.Background()
	s := r.Session()
	cases := []struct {
		name   string
		t      Type
		want   Status
		reason string
		value  string
	}{
		{"spike.porcupine.org", A, OK, "", "168.100.3.2"},
		{"SPIKE.porcupine.org.", AAAA, OK, "", "2604:8d00:0:1::3"},
		{"spike.porcupine.org", MX, NotFound, reasonNoData, ""},
		{"empty.porcupine.org", A, NotFound, reasonNoData, ""}, // empty non-terminal
		{"nxdomain.porcupine.org", A, Fail, reasonNotFound, ""},
		{"servfail.porcupine.org", A, Retry, reasonRetry, ""},
		{"refused.porcupine.org", MX, Retry, reasonRetry, ""},
		{"notimp.porcupine.org", A, Fail, reasonNoRecov, ""},
		{"bad..name", A, NotFound, reasonNotFound, ""},
		{"1.2.3.4", A, NotFound, reasonNotFound, ""},
		{"garbled.porcupine.org", A, Retry, reasonRetry, ""},
		{"badmx.porcupine.org", MX, Invalid, reasonInvalid, ""},
		{"mixmx.porcupine.org", MX, OK, "", "good.porcupine.org"},
		{"badowner.porcupine.org", A, Invalid, reasonInvalid, ""},
		{"esc.porcupine.org", TXT, OK, "", "a\"b\\c d"},
		{"3.0.0.127.dnsbltest.porcupine.org", TXT, OK, "", "one"},
		{"x.wild.porcupine.org", A, OK, "", "127.0.0.2"},
		{"a.b.wild.porcupine.org", A, OK, "", "127.0.0.2"},
		{"x.wild.porcupine.org", TXT, NotFound, reasonNoData, ""},
		{"alias.porcupine.org", A, OK, "", "168.100.3.2"},
		{"porcupine.org", NS, OK, "", "ns1.porcupine.org"},
		{"2.0.0.127.dnsbltest.porcupine.org", TXT, OK, "", "DNS blocklist test"},
	}
	for _, c := range cases {
		res := s.Lookup(ctx, c.name, c.t)
		if res.Status != c.want || res.Reason != c.reason {
			t.Errorf("%s/%s: %v %q, want %v %q", c.name, c.t, res.Status, res.Reason, c.want, c.reason)
			continue
		}
		if c.value != "" && (len(res.RRs) == 0 || res.RRs[0].Value != c.value) {
			t.Errorf("%s/%s: records %+v, want %s", c.name, c.t, res.RRs, c.value)
		}
		want := "name=" + c.name + " type=" + c.t.String() + ": " + c.reason
		if c.reason == reasonNotFound && c.want == NotFound {
			// Refused before asking (dns_lookup.c).
			want = "Name service error for " + c.name + ": invalid host or domain name"
		}
		if c.want != OK && !strings.Contains(res.Why, want) {
			t.Errorf("%s/%s: Why %q, want %q", c.name, c.t, res.Why, want)
		}
	}
}

func TestCache(t *testing.T) {
	srv, r := start(t, Options{})
	ctx := context.Background()
	s := r.Session()
	for range 3 {
		s.Lookup(ctx, "spike.porcupine.org", A)
		s.Lookup(ctx, "nxdomain.porcupine.org", A)
	}
	if n := srv.Queries(); n != 2 {
		t.Fatalf("3 rounds of 2 lookups asked %d questions, want 2", n)
	}
	// Another session has its own cache.
	r.Session().Lookup(ctx, "spike.porcupine.org", A)
	if n := srv.Queries(); n != 3 {
		t.Fatalf("second session: %d questions, want 3", n)
	}
	s.Flush()
	s.Lookup(ctx, "spike.porcupine.org.", A)
	if n := srv.Queries(); n != 4 {
		t.Fatalf("after Flush: %d questions, want 4", n)
	}
}

func TestTimeout(t *testing.T) {
	srv, r := start(t, Options{Timeout: 200 * time.Millisecond})
	srv.Delay("slow.porcupine.org", time.Second)
	res := r.Session().Lookup(context.Background(), "slow.porcupine.org", A)
	if res.Status != Retry || res.Reason != reasonRetry {
		t.Fatalf("slow server: %v %q, want Retry", res.Status, res.Reason)
	}
	// A cancelled context is a temporary failure too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res := r.Session().Lookup(ctx, "spike.porcupine.org", A); res.Status != Retry {
		t.Fatalf("cancelled: %v, want Retry", res.Status)
	}
}

func TestNoServer(t *testing.T) {
	// A closed UDP port: the attempts fail and the result is temporary.
	r, err := New(Options{Servers: []string{"127.0.0.1:1"}, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res := r.Session().Lookup(context.Background(), "spike.porcupine.org", A); res.Status != Retry {
		t.Fatalf("no server: %v, want Retry", res.Status)
	}
}

func TestTruncatedOverTCP(t *testing.T) {
	srv, r := start(t, Options{})
	var recs []string
	for i := range 60 {
		recs = append(recs, "big.porcupine.org. IN TXT \""+strings.Repeat("x", 50)+string(rune('a'+i%26))+"\"")
	}
	srv.Add(recs...)
	res := r.Session().Lookup(context.Background(), "big.porcupine.org", TXT)
	if res.Status != OK || len(res.RRs) != 60 {
		t.Fatalf("big TXT: %v, %d records, want 60 over TCP", res.Status, len(res.RRs))
	}
}

func TestHostAddrs(t *testing.T) {
	srv, r4 := start(t, Options{IPv4: true})
	srv.Fail("half.porcupine.org", mdns.RcodeServerFailure)
	ctx := context.Background()
	if res := r4.Session().HostAddrs(ctx, "spike.porcupine.org"); res.Status != OK || len(res.RRs) != 1 {
		t.Errorf("ipv4 only: %+v", res)
	}
	r46, err := New(Options{Servers: []string{srv.Addr()}, IPv4: true, IPv6: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res := r46.Session().HostAddrs(ctx, "spike.porcupine.org"); res.Status != OK || len(res.RRs) != 2 {
		t.Errorf("all: %+v", res)
	}
	if res := r46.Session().HostAddrs(ctx, "nullmx.porcupine.org"); res.Status != OK || len(res.RRs) != 1 {
		t.Errorf("A only: %+v", res)
	}
	if res := r46.Session().HostAddrs(ctx, "porcupine.org"); res.Status != NotFound {
		t.Errorf("no address: %+v", res)
	}
	if res := r46.Session().HostAddrs(ctx, "nxdomain.porcupine.org"); res.Status != Fail || res.Reason != reasonNotFound {
		t.Errorf("nxdomain: %+v", res)
	}
	if res := r46.Session().HostAddrs(ctx, "half.porcupine.org"); res.Status != Retry {
		t.Errorf("servfail: %+v", res)
	}
}

func TestMX(t *testing.T) {
	_, r := start(t, Options{})
	ctx := context.Background()
	seen := map[string]bool{}
	for range 40 {
		res := r.Session().MX(ctx, "porcupine.org")
		if res.Status != OK || len(res.RRs) != 4 {
			t.Fatalf("MX: %+v", res)
		}
		var prefs []uint16
		for _, x := range res.RRs {
			prefs = append(prefs, x.Pref)
		}
		if !slices.Equal(prefs, []uint16{5, 10, 10, 20}) || res.RRs[0].Value != "a.porcupine.org" || res.RRs[3].Value != "d.porcupine.org" {
			t.Fatalf("MX order: %+v", res.RRs)
		}
		seen[res.RRs[1].Value] = true
	}
	if !seen["b.porcupine.org"] || !seen["c.porcupine.org"] {
		t.Errorf("equal preferences never shuffled in 40 tries: %v", seen)
	}
	res := r.Session().MX(ctx, "nullmx.porcupine.org")
	if res.Status != NullMX || len(res.RRs) != 1 || res.RRs[0].Value != "" {
		t.Errorf("null MX: %+v", res)
	}
	if res := r.Session().MX(ctx, "spike.porcupine.org"); res.Status != NotFound {
		t.Errorf("no MX: %+v", res)
	}
}

func TestReverseQuery(t *testing.T) {
	cases := []struct{ addr, domain, want string }{
		{"127.0.0.2", "zen.example", "2.0.0.127.zen.example"},
		{"168.100.3.2", "dnsbltest.porcupine.org.", "2.3.100.168.dnsbltest.porcupine.org"},
		{"::ffff:10.1.2.3", "in-addr.arpa", "3.2.1.10.in-addr.arpa"},
		{"2001:db8::567:89ab", "ip6.arpa",
			"b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
		{"::1", "dnsbl.example", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.dnsbl.example"},
	}
	for _, c := range cases {
		if got := ReverseQuery(netip.MustParseAddr(c.addr), c.domain); got != c.want {
			t.Errorf("ReverseQuery(%s, %s) = %s, want %s", c.addr, c.domain, got, c.want)
		}
	}
}

type logs struct {
	mu   sync.Mutex
	warn []string
	info []string
}

func (l *logs) w(s string) { l.mu.Lock(); l.warn = append(l.warn, s); l.mu.Unlock() }
func (l *logs) i(s string) { l.mu.Lock(); l.info = append(l.info, s); l.mu.Unlock() }

func regexpTable(t *testing.T, src string) maps.Table {
	t.Helper()
	p := filepath.Join(t.TempDir(), "filter.reg")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	tab, err := maps.Open("regexp:"+p, maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestReplyFilter(t *testing.T) {
	var l logs
	_, r := start(t, Options{
		ReplyFilter: regexpTable(t, "/ IN MX /\tIGNORE\n/^spike\\.porcupine\\.org\\. [0-9]+ IN A /\tignore\n/ IN TXT DNS blocklist/ IGNORE\n/^oops\\./ oops\n/ IN (PTR|NS) / IGNORE\n/^localhost\\.test\\. / IGNORE\n"),
		Warn:        l.w, Info: l.i,
	})
	ctx := context.Background()
	s := r.Session()
	res := s.MX(ctx, "xn--1xa.porcupine.org")
	if res.Status != Policy || res.Reason != reasonPolicy || res.Why != "Error looking up name=xn--1xa.porcupine.org type=MX: DNS reply filter drops all results" {
		t.Errorf("all MX dropped: %+v", res)
	}
	// A null MX is reported before the filter sees it (dns_lookup.c).
	if res := s.MX(ctx, "nullmx.porcupine.org"); res.Status != NullMX {
		t.Errorf("null MX under an MX-dropping filter: %+v", res)
	}
	if res := s.HostAddrs(ctx, "spike.porcupine.org"); res.Status != OK || len(res.RRs) != 1 || res.RRs[0].Type != AAAA {
		t.Errorf("A dropped, AAAA kept: %+v", res)
	}
	if res := s.Lookup(ctx, "fist.porcupine.org", A); res.Status != OK {
		t.Errorf("unfiltered: %+v", res)
	}
	want := []string{
		"ignoring DNS RR: xn--1xa.porcupine.org. 3600 IN MX 10 spike.porcupine.org.",
		"ignoring DNS RR: spike.porcupine.org. 3600 IN A 168.100.3.2",
	}
	// Postfix's smtpd filters A, AAAA, MX and TXT only, and the client
	// name (found through the C library there) is never filtered.
	if res := s.Lookup(ctx, "porcupine.org", NS); res.Status != OK {
		t.Errorf("NS filtered: %+v", res)
	}
	if cn := s.ClientName(ctx, netip.MustParseAddr("127.0.0.1")); cn.Status != PeerOK {
		t.Errorf("client name filtered: %+v", cn)
	}
	if res := s.Lookup(ctx, "localhost.test", A); res.Status != Policy {
		t.Errorf("A not filtered: %+v", res)
	}
	want = append(want, "ignoring DNS RR: localhost.test. 3600 IN A 127.0.0.1")
	if !slices.Equal(l.info, want) {
		t.Errorf("info logs %q, want %q", l.info, want)
	}
	// TXT dropped: still listed, the TXT reason is gone with a warning.
	lst := s.Listed(ctx, "2.0.0.127.dnsbltest.porcupine.org", "")
	if !lst.Listed || lst.TXT != "" || lst.Addr != "127.0.0.2" {
		t.Errorf("listed without TXT: %+v", lst)
	}
	if len(l.warn) != 1 || l.warn[0] != "2.0.0.127.dnsbltest.porcupine.org: TXT lookup error: DNS reply filter drops all results" {
		t.Errorf("warnings %q", l.warn)
	}
}

func TestReplyFilterError(t *testing.T) {
	var l logs
	_, r := start(t, Options{ReplyFilter: regexpTable(t, "/./ oops\n"), Warn: l.w, Info: l.i})
	res := r.Session().Lookup(context.Background(), "spike.porcupine.org", A)
	if res.Status != Retry || res.Why != "Error looking up name=spike.porcupine.org type=A: Invalid DNS reply filter syntax" {
		t.Errorf("filter error: %+v", res)
	}
	if len(l.warn) != 1 || l.warn[0] != `smtpd_dns_reply_filter: unknown DNS filter action: "oops"` {
		t.Errorf("warnings %q", l.warn)
	}
	// NXDOMAIN is not filtered.
	if res := r.Session().Lookup(context.Background(), "nxdomain.porcupine.org", A); res.Status != Fail {
		t.Errorf("nxdomain under a broken filter: %+v", res)
	}
}

func TestClientName(t *testing.T) {
	srv, r := start(t, Options{Timeout: 300 * time.Millisecond})
	srv.Fail("slow.test", mdns.RcodeServerFailure)
	srv.Fail("3.0.0.127.in-addr.arpa", mdns.RcodeServerFailure)
	ctx := context.Background()
	cases := []struct {
		addr      string
		want      ClientName
		wantWarns int
	}{
		{"127.0.0.1", ClientName{"localhost.test", "localhost.test", PeerOK, PeerOK}, 0},
		{"::ffff:127.0.0.1", ClientName{"localhost.test", "localhost.test", PeerOK, PeerOK}, 0},
		{"127.0.0.2", ClientName{Unknown, "forged.test", PeerForged, PeerOK}, 1},
		{"127.0.0.3", ClientName{Unknown, Unknown, PeerTempFail, PeerTempFail}, 0},
		{"127.0.0.4", ClientName{Unknown, "slow.test", PeerTempFail, PeerOK}, 1},
		{"127.0.0.5", ClientName{Unknown, Unknown, PeerPermFail, PeerPermFail}, 1},
		{"127.0.0.6", ClientName{Unknown, "gone.test", PeerForged, PeerOK}, 1},
		{"127.0.0.7", ClientName{Unknown, Unknown, PeerPermFail, PeerPermFail}, 0},
		{"::1", ClientName{"six.test", "six.test", PeerOK, PeerOK}, 0},
	}
	for _, c := range cases {
		var l logs
		r.warn = l.w
		got := r.Session().ClientName(ctx, netip.MustParseAddr(c.addr))
		if got != c.want {
			t.Errorf("ClientName(%s) = %+v, want %+v", c.addr, got, c.want)
		}
		if len(l.warn) != c.wantWarns {
			t.Errorf("ClientName(%s) warned %q", c.addr, l.warn)
		}
		if w, ok := warnText[c.addr]; ok && (len(l.warn) == 0 || l.warn[0] != w) {
			t.Errorf("ClientName(%s) warned %q, want %q", c.addr, l.warn, w)
		}
	}
}

// warnText are smtpd_peer.c's warnings, with glibc's gai_strerror texts.
var warnText = map[string]string{
	"127.0.0.2": "hostname forged.test does not resolve to address 127.0.0.2",
	"127.0.0.4": "hostname slow.test does not resolve to address 127.0.0.4: Temporary failure in name resolution",
	"127.0.0.5": "numeric hostname: 1.2.3.4",
	"127.0.0.6": "hostname gone.test does not resolve to address 127.0.0.6: Name or service not known",
}

func TestListed(t *testing.T) {
	srv, r := start(t, Options{Timeout: 300 * time.Millisecond})
	srv.Fail("9.0.0.127.dnsbltest.porcupine.org", mdns.RcodeServerFailure)
	ctx := context.Background()
	cases := []struct {
		query, filter string
		listed        bool
		addr, txt     string
		status        Status
	}{
		{"2.0.0.127.dnsbltest.porcupine.org", "", true, "127.0.0.2", "DNS blocklist test", OK},
		{"2.0.0.127.dnsbltest.porcupine.org", "127.0.0.2", true, "127.0.0.2", "DNS blocklist test", OK},
		{"2.0.0.127.dnsbltest.porcupine.org", "127.0.0.3", false, "", "", OK},
		{"2.0.0.127.dnsbltest.porcupine.org", "127.0.0.[2..11]", true, "127.0.0.2", "DNS blocklist test", OK},
		{"3.0.0.127.dnsbltest.porcupine.org", "127.0.0.[10;20]", true, "127.0.0.10", "one three", OK},
		{"3.0.0.127.dnsbltest.porcupine.org", "127.0.0.[4..9;11]", false, "", "", OK},
		{"3.0.0.127.dnsbltest.porcupine.org", "&0.0.0.2", true, "127.0.0.3", "one three", OK},
		{"2.0.0.127.dnsbltest.porcupine.org", "&0.0.0.4", false, "", "", OK},
		{"2.3.100.168.dnsbltest.porcupine.org", "", false, "", "", Fail},
		{"2.3.100.168.wild.porcupine.org", "", true, "127.0.0.2", "", OK},
		{"9.0.0.127.dnsbltest.porcupine.org", "", false, "", "", Retry},
		{"2.0.0.127.dnsbltest.porcupine.org", "127.0.0", false, "", "", Invalid},
	}
	for _, c := range cases {
		s := r.Session()
		got := s.Listed(ctx, c.query, c.filter)
		if got.Listed != c.listed || got.Addr != c.addr || got.TXT != c.txt || got.Status != c.status {
			t.Errorf("Listed(%s, %q) = %+v", c.query, c.filter, got)
		}
	}
}

func TestParseFilter(t *testing.T) {
	cases := []struct {
		filter string
		match  []string
		miss   []string
	}{
		{"127.0.0.2", []string{"127.0.0.2"}, []string{"127.0.0.3", "127.0.1.2"}},
		{"127.0.0.[2..11]", []string{"127.0.0.2", "127.0.0.11", "127.0.0.5"}, []string{"127.0.0.1", "127.0.0.12"}},
		{"127.[0;1].0.[1;3..4]", []string{"127.1.0.1", "127.0.0.4"}, []string{"127.2.0.1", "127.0.0.2"}},
		{"[0..255].[0..255].[0..255].[0..255]", []string{"0.0.0.0", "255.255.255.255"}, nil},
		{"&0.0.0.12", []string{"127.0.0.4", "127.0.0.8"}, []string{"127.0.0.2", "127.0.0.3"}},
	}
	for _, c := range cases {
		f, err := ParseFilter(c.filter)
		if err != nil {
			t.Errorf("%s: %v", c.filter, err)
			continue
		}
		for _, a := range c.match {
			if !f.Match(netip.MustParseAddr(a)) {
				t.Errorf("%s should match %s", c.filter, a)
			}
		}
		for _, a := range c.miss {
			if f.Match(netip.MustParseAddr(a)) {
				t.Errorf("%s should not match %s", c.filter, a)
			}
		}
	}
	for _, bad := range []string{"", "127.0.0", "127.0.0.256", "127.0.0.[]", "127.0.0.[3..2]", "127.0.0.[1", "127.0.0.1]",
		"127.0.0.[[1]]", "127.0.0.-1", "127.0.0.1.1", "&1.2.3", "&::1", "127.0.0.[1;]", "127.0.0.[..3]", "127.0.0. 1"} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("ParseFilter(%q) accepted", bad)
		}
	}
}

func TestClientNameHostsFile(t *testing.T) {
	srv := dnsserver.Start(t, zone...)
	hosts := filepath.Join(t.TempDir(), "hosts")
	os.WriteFile(hosts, []byte("# comment\n127.0.0.8 Mail.Example.  mail\n::1 ip6-localhost\n"), 0o644)
	r, err := New(Options{Servers: []string{srv.Addr()}, HostsFile: hosts, IPv4: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got := r.Session().ClientName(ctx, netip.MustParseAddr("127.0.0.8")); got != (ClientName{"mail.example", "mail.example", PeerOK, PeerOK}) {
		t.Errorf("hosts file name: %+v", got)
	}
	// An address the file does not list is asked of DNS.
	if got := r.Session().ClientName(ctx, netip.MustParseAddr("127.0.0.1")); got.Name != "localhost.test" {
		t.Errorf("DNS after the file: %+v", got)
	}
	n := srv.Queries()
	r.Session().ClientName(ctx, netip.MustParseAddr("::1"))
	if srv.Queries() != n {
		t.Errorf("a name the file knows was asked of DNS")
	}
	if _, err := New(Options{Servers: []string{srv.Addr()}, HostsFile: filepath.Join(t.TempDir(), "none")}); err != nil {
		t.Errorf("missing hosts file: %v", err)
	}
}
