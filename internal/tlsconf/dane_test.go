package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"moat/internal/tlsconf/tlsconftest"
)

// tlsaFor is the record (usage, selector, matching) of c.
func tlsaFor(c *x509.Certificate, usage, sel, match uint8) TLSA {
	data := c.Raw
	if sel == SelectorSPKI {
		data = c.RawSubjectPublicKeyInfo
	}
	switch match {
	case MatchSHA256:
		d := sha256.Sum256(data)
		data = d[:]
	case MatchSHA512:
		d := sha512.Sum512(data)
		data = d[:]
	}
	return TLSA{Usage: usage, Selector: sel, Matching: match, Data: append([]byte(nil), data...)}
}

// selfSigned is a self-signed certificate for cn valid from nb to na.
func selfSigned(t *testing.T, cn string, nb, na time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: nb, NotAfter: na, DNSNames: []string{cn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every usage, selector and matching type, with the certificate it names
// and with another: DANE-EE matches the leaf whatever its name or dates;
// DANE-TA makes a chain certificate the anchor and checks the name;
// PKIX-TA and PKIX-EE are unusable for SMTP (RFC 7672 section 3.1.3).
func TestDANEVerify(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.New(t, dir, "ca", "DANE Test CA", tlsconftest.ECDSA, nil, true)
	other := tlsconftest.New(t, dir, "other", "Other CA", tlsconftest.RSA, nil, true)
	leaf := tlsconftest.New(t, dir, "mx", "mx.example.test", tlsconftest.ECDSA, ca, false)
	wrong := tlsconftest.New(t, dir, "wrong", "mx.other.test", tlsconftest.ECDSA, ca, false)
	chain := []*x509.Certificate{leaf.Cert, ca.Cert}
	names := []string{"mx.example.test", "example.test"}
	for _, usage := range []uint8{UsagePKIXTA, UsagePKIXEE, UsageDANETA, UsageDANEEE} {
		for _, sel := range []uint8{SelectorCert, SelectorSPKI} {
			for _, match := range []uint8{MatchFull, MatchSHA256, MatchSHA512} {
				named := leaf.Cert
				if usage == UsageDANETA || usage == UsagePKIXTA {
					named = ca.Cert
				}
				good := tlsaFor(named, usage, sel, match)
				bad := tlsaFor(other.Cert, usage, sel, match)
				usable := usage >= UsageDANETA
				if good.Usable() != usable {
					t.Errorf("%v: Usable %v", good, good.Usable())
				}
				d := NewDANE([]TLSA{good}, names...)
				if !usable {
					if d != nil {
						t.Errorf("%v: a DANE from unusable records", good)
					}
					continue
				}
				if err := d.Verify(chain); err != nil {
					t.Errorf("%v: %v", good, err)
				}
				if err := NewDANE([]TLSA{bad}, names...).Verify(chain); err == nil {
					t.Errorf("%v: another certificate's record accepted", bad)
				} else if _, ok := IsDANEError(err); !ok {
					t.Errorf("%v: error %T", bad, err)
				}
				// A digest one byte off.
				off := good
				off.Data = append([]byte(nil), good.Data...)
				off.Data[len(off.Data)-1] ^= 1
				if err := NewDANE([]TLSA{off}, names...).Verify(chain); err == nil {
					t.Errorf("%v: altered record accepted", off)
				}
			}
		}
	}

	// DANE-TA: the name must be one of the reference identifiers.
	ta := tlsaFor(ca.Cert, UsageDANETA, SelectorSPKI, MatchSHA256)
	err := NewDANE([]TLSA{ta}, names...).Verify([]*x509.Certificate{wrong.Cert, ca.Cert})
	if err == nil || !strings.Contains(err.Error(), "name mismatch") {
		t.Errorf("DANE-TA with another name: %v", err)
	}
	// The next-hop domain is a reference identifier too.
	nh := tlsconftest.New(t, dir, "nh", "example.test", tlsconftest.ECDSA, ca, false)
	if err := NewDANE([]TLSA{ta}, names...).Verify([]*x509.Certificate{nh.Cert, ca.Cert}); err != nil {
		t.Errorf("DANE-TA for the next-hop domain: %v", err)
	}
	// The anchor must be in the chain the server sends.
	if err := NewDANE([]TLSA{ta}, names...).Verify([]*x509.Certificate{leaf.Cert}); err == nil {
		t.Error("DANE-TA without the anchor in the chain accepted")
	}
	// DANE-TA checks dates; DANE-EE does not (RFC 7672 section 3.1.1).
	past := time.Now().Add(48 * time.Hour)
	d := NewDANE([]TLSA{ta}, names...)
	d.Now = func() time.Time { return past }
	if err := d.Verify(chain); err == nil {
		t.Error("DANE-TA accepted an expired chain")
	}
	expired := selfSigned(t, "somewhere.else", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	if err := NewDANE([]TLSA{tlsaFor(expired, UsageDANEEE, SelectorCert, MatchSHA256)}, names...).Verify([]*x509.Certificate{expired}); err != nil {
		t.Errorf("DANE-EE of an expired certificate for another name: %v", err)
	}
	// A self-signed leaf named by DANE-TA is its own anchor.
	self := selfSigned(t, "mx.example.test", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err := NewDANE([]TLSA{tlsaFor(self, UsageDANETA, SelectorCert, MatchFull)}, names...).Verify([]*x509.Certificate{self}); err != nil {
		t.Errorf("DANE-TA of a self-signed leaf: %v", err)
	}
	// Wildcards stand for one label.
	for _, tc := range []struct {
		want, cert string
		ok         bool
	}{{"mx.example.test", "*.example.test", true}, {"a.mx.example.test", "*.example.test", false}, {"example.test", "*.example.test", false}, {"mx.example.test", "MX.Example.Test.", true}} {
		if hostMatches(tc.want, tc.cert) != tc.ok {
			t.Errorf("hostMatches(%q, %q) != %v", tc.want, tc.cert, tc.ok)
		}
	}
	// Records that are not usable: digest lengths, unknown types.
	for _, r := range []TLSA{
		{UsageDANEEE, SelectorSPKI, MatchSHA256, make([]byte, 31)},
		{UsageDANEEE, SelectorSPKI, MatchSHA512, make([]byte, 32)},
		{UsageDANEEE, SelectorSPKI, 3, make([]byte, 32)},
		{UsageDANEEE, 2, MatchSHA256, make([]byte, 32)},
		{4, SelectorSPKI, MatchSHA256, make([]byte, 32)},
		{UsageDANEEE, SelectorCert, MatchFull, nil},
	} {
		if r.Usable() {
			t.Errorf("%v usable", r)
		}
	}
	if err := NewDANE([]TLSA{ta}).Verify(nil); err == nil {
		t.Error("no certificate accepted")
	}
}

// DANEConfig's VerifyConnection runs in a real handshake: a matching
// record completes it, another one fails it with a DANEError, whatever
// roots the client has.
func TestDANEHandshake(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.New(t, dir, "ca", "DANE Test CA", tlsconftest.ECDSA, nil, true)
	leaf := tlsconftest.New(t, dir, "mx", "mx.example.test", tlsconftest.ECDSA, ca, false)
	cl, err := NewClient(load(t, ""), func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(append(leaf.CertPEM, ca.CertPEM...), leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rec TLSA
		ok  bool
	}{
		{tlsaFor(leaf.Cert, UsageDANEEE, SelectorSPKI, MatchSHA256), true},
		{tlsaFor(ca.Cert, UsageDANETA, SelectorCert, MatchSHA256), true},
		{tlsaFor(ca.Cert, UsageDANEEE, SelectorSPKI, MatchSHA256), false},
	} {
		a, b := netPipe(t)
		sc := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{pair}})
		go func() { _ = sc.Handshake() }()
		cfg := cl.DANEConfig(NewDANE([]TLSA{tc.rec}, "mx.example.test"), "mx.example.test")
		if cfg.ServerName != "mx.example.test" {
			t.Errorf("SNI %q", cfg.ServerName)
		}
		err := tls.Client(b, cfg).Handshake()
		if tc.ok && err != nil {
			t.Errorf("%v: %v", tc.rec, err)
		}
		if !tc.ok {
			if reason, ok := IsDANEError(err); !ok || reason == "" {
				t.Errorf("%v: handshake error %v", tc.rec, err)
			}
		}
	}
}
