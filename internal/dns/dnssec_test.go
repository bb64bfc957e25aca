package dns

import (
	"context"
	"testing"

	"moat/internal/testutil/dnsserver"
)

// smtp_dns_support_level = dnssec: the AD bit of the trusted resolver's
// reply becomes Result.Authentic, for positive answers, denials, CNAME
// chains (every hop) and both address families; without DNSSEC nothing
// is authentic, whatever the server says.
func TestAuthentic(t *testing.T) {
	srv := dnsserver.Start(t,
		"example.test. IN MX 10 mx.example.test.",
		"mx.example.test. IN A 127.0.0.31",
		"mx.example.test. IN AAAA ::1",
		"_25._tcp.mx.example.test. IN TLSA 3 1 1 0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
		"alias.example.test. IN CNAME mx.plain.test.",
		"mx.plain.test. IN A 127.0.0.32",
		"back.plain.test. IN CNAME mx.example.test.",
	)
	srv.Secure("example.test")
	ctx := context.Background()
	r, err := New(Options{Servers: []string{srv.Addr()}, DNSSEC: true, IPv4: true, IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	s := r.Session()
	for _, tc := range []struct {
		name string
		t    Type
		st   Status
		auth bool
	}{
		{"example.test", MX, OK, true},
		{"mx.example.test", A, OK, true},
		{"nx.example.test", A, Fail, true},       // authenticated NXDOMAIN
		{"mx.example.test", TXT, NotFound, true}, // authenticated NODATA
		{"mx.plain.test", A, OK, false},
		{"alias.example.test", A, OK, false}, // the chain leaves the signed zone
		{"back.plain.test", A, OK, false},    // it starts outside
		{"_25._tcp.mx.example.test", TLSA, OK, true},
	} {
		res := s.Lookup(ctx, tc.name, tc.t)
		if res.Status != tc.st || res.Authentic != tc.auth {
			t.Errorf("%s %s: status %v authentic %v, want %v %v", tc.name, tc.t, res.Status, res.Authentic, tc.st, tc.auth)
		}
	}
	if res := s.HostAddrs(ctx, "mx.example.test"); res.Status != OK || !res.Authentic || len(res.RRs) != 2 {
		t.Errorf("HostAddrs: %+v", res)
	}
	if res := s.MX(ctx, "example.test"); !res.Authentic {
		t.Errorf("MX: %+v", res)
	}
	res := s.Lookup(ctx, "_25._tcp.mx.example.test", TLSA)
	if len(res.RRs) != 1 {
		t.Fatalf("TLSA: %+v", res)
	}
	x := res.RRs[0]
	if x.Usage != 3 || x.Selector != 1 || x.Matching != 1 || x.Value != "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
		t.Errorf("TLSA record %+v", x)
	}
	if got, want := x.Text(), "_25._tcp.mx.example.test. 3600 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"; got != want {
		t.Errorf("Text %q, want %q", got, want)
	}

	// Without DNSSEC the query has neither the DO nor the AD bit, and
	// nothing is authentic.
	plain, err := New(Options{Servers: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	if res := plain.Session().Lookup(ctx, "example.test", MX); res.Status != OK || res.Authentic {
		t.Errorf("without DNSSEC: %+v", res)
	}
	// A failure is never authentic.
	srv.Fail("fail.example.test", 2)
	if res := s.Lookup(ctx, "fail.example.test", A); res.Status != Retry || res.Authentic {
		t.Errorf("SERVFAIL: %+v", res)
	}
}
