package tlsconf

import (
	"crypto/tls"
	"strings"
	"testing"

	"moat/internal/tlsconf/tlsconftest"
)

func TestMatchName(t *testing.T) {
	for _, tc := range []struct {
		strategy, cert string
		want           bool
	}{
		{"hostname", "mx.example.com", true},
		{"hostname", "MX.Example.COM.", true},
		{"hostname", "mx2.example.com", false},
		{"hostname", "*.example.com", true},
		{"hostname", "*.com", false},
		{"nexthop", "example.com", true},
		{"nexthop", "mx.example.com", false},
		{"dot-nexthop", "mx.example.com", true},
		{"dot-nexthop", "a.b.example.com", true},
		{"dot-nexthop", "example.com", false},
		{"dot-nexthop", "badexample.com", false},
		{"dot-nexthop", "*.example.com", true},
		{".example.com", "mx.example.com", true},
		{".example.com", "example.com", false},
		{"mx.other.net", "mx.other.net", true},
		{"mx.other.net", "*.other.net", true},
		{"", "mx.example.com", false},
	} {
		if got := MatchName(tc.strategy, tc.cert, "mx.example.com", "example.com"); got != tc.want {
			t.Errorf("MatchName(%q, %q) = %v", tc.strategy, tc.cert, got)
		}
	}
}

func TestClientVerifyAndSummary(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.New(t, dir, "ca", "CA", tlsconftest.ECDSA, nil, true)
	leaf := tlsconftest.New(t, dir, "mx", "mx.example.com", tlsconftest.ECDSA, ca, false)
	c := load(t, "smtp_tls_CAfile = "+ca.CertFile+"\nsmtp_tls_security_level = verify\n")
	cl, err := NewClient(c, func(w string) { t.Log(w) })
	if err != nil {
		t.Fatal(err)
	}
	if cl.Level != ClientVerify || strings.Join(cl.VerifyMatch, ",") != "hostname" || strings.Join(cl.SecureMatch, ",") != "nexthop,dot-nexthop" {
		t.Fatalf("client %+v", cl)
	}
	cs := tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384, CurveID: tls.X25519}
	cs.PeerCertificates = append(cs.PeerCertificates, leaf.Cert)
	if tr, m := cl.Verify(cs, cl.VerifyMatch, "mx.example.com", "example.com"); !tr || !m {
		t.Errorf("hostname: trusted %v matched %v", tr, m)
	}
	if tr, m := cl.Verify(cs, cl.SecureMatch, "mx.example.com", "example.net"); !tr || m {
		t.Errorf("secure, other domain: trusted %v matched %v", tr, m)
	}
	other := load(t, "smtp_tls_CAfile = "+leaf.CertFile+"x\n")
	if _, err := NewClient(other, func(string) {}); err == nil {
		t.Error("missing CA file accepted")
	}
	got := ServerSummary(cs, true, true, "mx.example.com[192.0.2.1]:25")
	want := "Verified TLS connection established to mx.example.com[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519"
	if got != want {
		t.Errorf("summary\n got %s\nwant %s", got, want)
	}
	for _, tc := range []struct {
		trusted, matched bool
		kind             string
	}{{true, false, "Trusted"}, {false, false, "Untrusted"}} {
		if s := ServerSummary(cs, tc.trusted, tc.matched, "h[a]:25"); !strings.HasPrefix(s, tc.kind+" TLS connection established to h[a]:25") {
			t.Errorf("summary %s", s)
		}
	}
	if s := ServerSummary(tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}, false, false, "h[a]:25"); !strings.HasPrefix(s, "Anonymous ") {
		t.Errorf("summary %s", s)
	}
	for _, v := range []string{"fingerprint", "maybe"} {
		if _, err := ParseClientLevel(v); err == nil {
			t.Errorf("level %s accepted", v)
		}
	}
}

func TestClientSNI(t *testing.T) {
	for _, tc := range []struct{ param, want string }{{"", ""}, {"hostname", "mx.example.com"}, {"nexthop", "example.com"}, {"fixed.example.net", "fixed.example.net"}} {
		cl, err := NewClient(load(t, "smtp_tls_servername = "+tc.param+"\n"), func(string) {})
		if err != nil {
			t.Fatal(err)
		}
		if got := cl.SNI("mx.example.com", "example.com"); got != tc.want {
			t.Errorf("smtp_tls_servername = %q: SNI %q, want %q", tc.param, got, tc.want)
		}
		if got := cl.Config(ClientMay, cl.SNI("mx.example.com", "example.com")).ServerName; got != tc.want {
			t.Errorf("ServerName %q", got)
		}
	}
}
