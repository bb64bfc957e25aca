package tlsconf

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// TLSA certificate usages, selectors and matching types (RFC 6698
// section 2.1, the acronyms of RFC 7218).
const (
	UsagePKIXTA  = 0
	UsagePKIXEE  = 1
	UsageDANETA  = 2
	UsageDANEEE  = 3
	SelectorCert = 0
	SelectorSPKI = 1
	MatchFull    = 0
	MatchSHA256  = 1
	MatchSHA512  = 2
)

// TLSA is one TLSA record (RFC 6698 section 2.1): which certificate or
// key of the server's chain it names, and how.
type TLSA struct {
	Usage, Selector, Matching uint8
	// Data is the certificate association data: the selected
	// certificate or key itself, or its digest.
	Data []byte
}

// String is the record's presentation form, "3 1 1 hex", for logs.
func (r TLSA) String() string {
	return fmt.Sprintf("%d %d %d %x", r.Usage, r.Selector, r.Matching, r.Data)
}

// Usable reports whether an SMTP client may use the record: only
// DANE-TA(2) and DANE-EE(3) (RFC 7672 section 3.1.3: PKIX-TA and PKIX-EE
// need a trust store the client and server do not share), a known
// selector and matching type, and a digest of the right length (RFC 7671
// section 4, as OpenSSL's DANE code, which Postfix uses, skips the rest).
func (r TLSA) Usable() bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	switch r.Matching {
	case MatchFull:
		return len(r.Data) > 0
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// matches reports whether c is the certificate or key r names.
func (r TLSA) matches(c *x509.Certificate) bool {
	var sel []byte
	switch r.Selector {
	case SelectorCert:
		sel = c.Raw
	case SelectorSPKI:
		sel = c.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch r.Matching {
	case MatchFull:
		return bytes.Equal(sel, r.Data)
	case MatchSHA256:
		d := sha256.Sum256(sel)
		return bytes.Equal(d[:], r.Data)
	case MatchSHA512:
		d := sha512.Sum512(sel)
		return bytes.Equal(d[:], r.Data)
	}
	return false
}

// DANE is what one connection's server must prove (RFC 7672 section 3):
// its usable TLSA records and, for DANE-TA, the names its certificate
// may carry.
type DANE struct {
	// Records are the usable TLSA records.
	Records []TLSA
	// Names are the reference identifiers for DANE-TA(2) (RFC 7672
	// section 3.2.2): the TLSA base domain (the MX host name) and the
	// next-hop domain.
	Names []string
	// Now is the clock for DANE-TA validity dates; nil is time.Now.
	Now func() time.Time
}

// NewDANE keeps the usable records of rrs; nil when none is usable, the
// case RFC 7672 section 2.2 turns into mandatory but unauthenticated TLS.
func NewDANE(rrs []TLSA, names ...string) *DANE {
	var d DANE
	for _, r := range rrs {
		if r.Usable() {
			d.Records = append(d.Records, r)
		}
	}
	if len(d.Records) == 0 {
		return nil
	}
	for _, n := range names {
		if n = strings.ToLower(strings.TrimSuffix(n, ".")); n != "" {
			d.Names = append(d.Names, n)
		}
	}
	return &d
}

// DANEError is a server certificate that fails DANE verification; the
// agent defers with 4.7.5 and logs Postfix's "server certificate
// verification failed for host[addr]:port: ..." with it.
type DANEError struct {
	Reason string
}

func (e *DANEError) Error() string { return e.Reason }

// Verify checks a server chain against the records (RFC 7672 section
// 3.1): a DANE-EE(3) record matching the leaf certificate authenticates
// the server with no name or date check (section 3.1.1); a DANE-TA(2)
// record matching a certificate the server sent makes it the trust anchor
// of a chain that must be valid now and whose leaf names one of Names
// (sections 3.1.2 and 3.2.2). The trust anchor must be in the chain the
// server sends, as RFC 7671 section 5.2.2 asks servers to do.
func (d *DANE) Verify(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return &DANEError{"no certificate presented"}
	}
	leaf := chain[0]
	for _, r := range d.Records {
		if r.Usage == UsageDANEEE && r.matches(leaf) {
			return nil
		}
	}
	var taErr error
	for _, r := range d.Records {
		if r.Usage != UsageDANETA {
			continue
		}
		for i, ta := range chain {
			if !r.matches(ta) {
				continue
			}
			err := d.chainTo(chain, i)
			if err == nil {
				return nil
			}
			taErr = err
		}
	}
	if taErr != nil {
		return taErr
	}
	return &DANEError{"no TLSA record matches the certificate chain"}
}

// chainTo verifies the leaf up to chain[ta], the certificate a DANE-TA
// record matched, and the leaf's names.
func (d *DANE) chainTo(chain []*x509.Certificate, ta int) error {
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	roots := x509.NewCertPool()
	roots.AddCert(chain[ta])
	inter := x509.NewCertPool()
	for i, c := range chain[1:] {
		if i+1 != ta {
			inter.AddCert(c)
		}
	}
	// The trust anchor is the TLSA record's, not a public CA's, so any
	// extended key usage the anchor allows is accepted (RFC 7672
	// section 3.1.2 asks for no key-usage policy).
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		CurrentTime: now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return &DANEError{"certificate chain to the DANE-TA trust anchor: " + err.Error()}
	}
	names := chain[0].DNSNames
	if len(names) == 0 && chain[0].Subject.CommonName != "" {
		// RFC 6125 section 6.4.4: the CN only without DNS-IDs.
		names = []string{chain[0].Subject.CommonName}
	}
	for _, want := range d.Names {
		for _, n := range names {
			if hostMatches(want, n) {
				return nil
			}
		}
	}
	return &DANEError{fmt.Sprintf("subject name mismatch: certificate names %s, wanted %s",
		strings.Join(names, ", "), strings.Join(d.Names, " or "))}
}

// hostMatches compares a reference identifier (lower case) with a
// certificate name: equal, or a "*" as the whole left-most label standing
// for one label (RFC 7672 section 3.2.3, RFC 6125 section 6.4.3); DANE-TA
// and the verify/secure match strategies (MatchName) share it.
func hostMatches(want, certName string) bool {
	certName = strings.ToLower(strings.TrimSuffix(certName, "."))
	if want == "" || certName == "" {
		return false
	}
	if certName == want {
		return true
	}
	if rest, ok := strings.CutPrefix(certName, "*."); ok {
		if i := strings.IndexByte(want, '.'); i > 0 && want[i+1:] == rest {
			return true
		}
	}
	return false
}

// DANEConfig is the crypto/tls configuration of a connection that DANE
// authenticates: the mandatory protocols and ciphers, SNI with the TLSA
// base domain host (RFC 7672 section 8.1), and d's check in
// VerifyConnection, so a server that fails it gets no further than the
// handshake. InsecureSkipVerify stays set: the Web PKI's roots, names and
// dates are not DANE's (a DANE-EE server may be self-signed and expired),
// and VerifyConnection runs on every handshake whatever it says.
func (cl *Client) DANEConfig(d *DANE, host string) *tls.Config {
	cfg := cl.mandatory.Clone()
	cfg.ServerName = host
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return d.Verify(cs.PeerCertificates)
	}
	return cfg
}

// IsDANEError reports whether err (from a handshake) is a DANE
// verification failure, and its reason.
func IsDANEError(err error) (string, bool) {
	var de *DANEError
	if errors.As(err, &de) {
		return de.Reason, true
	}
	return "", false
}
