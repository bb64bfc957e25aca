package tlsconf

import (
	"crypto/x509"
	"testing"

	"moat/internal/tlsconf/tlsconftest"
)

// FuzzDANEVerify feeds Verify a chain the server controls (any DER it
// sends that x509 parses) and any TLSA record the DNS gives: it never
// panics, and it accepts only when the record names a certificate of the
// chain.
func FuzzDANEVerify(f *testing.F) {
	ca := tlsconftest.New(f, "", "ca", "Fuzz CA", tlsconftest.ECDSA, nil, true)
	leaf := tlsconftest.New(f, "", "mx", "mx.example.test", tlsconftest.ECDSA, ca, false)
	for _, r := range []TLSA{
		tlsaFor(leaf.Cert, UsageDANEEE, SelectorSPKI, MatchSHA256),
		tlsaFor(ca.Cert, UsageDANETA, SelectorCert, MatchSHA512),
		tlsaFor(ca.Cert, UsageDANETA, SelectorSPKI, MatchFull),
		{UsagePKIXEE, SelectorCert, MatchSHA256, make([]byte, 32)},
	} {
		f.Add(leaf.Cert.Raw, ca.Cert.Raw, r.Usage, r.Selector, r.Matching, r.Data)
	}
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00}, []byte{}, uint8(3), uint8(0), uint8(0), []byte{0x30})
	f.Fuzz(func(t *testing.T, leafDER, caDER []byte, usage, sel, match uint8, data []byte) {
		var chain []*x509.Certificate
		for _, der := range [][]byte{leafDER, caDER} {
			if c, err := x509.ParseCertificate(der); err == nil {
				chain = append(chain, c)
			}
		}
		rec := TLSA{Usage: usage, Selector: sel, Matching: match, Data: data}
		d := NewDANE([]TLSA{rec}, "mx.example.test", "example.test")
		if d == nil {
			if rec.Usable() {
				t.Fatalf("%v usable but dropped", rec)
			}
			return
		}
		if d.Verify(chain) != nil {
			return
		}
		for _, c := range chain {
			if rec.matches(c) {
				return
			}
		}
		t.Fatalf("%v accepted a chain it does not name", rec)
	})
}
