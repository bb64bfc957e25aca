package tlsconf

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// digests are the smtpd_tls_fingerprint_digest values moat computes.
var digests = map[string]func() hash.Hash{
	"md5": md5.New, "sha1": sha1.New, "sha224": sha256.New224, "sha256": sha256.New,
	"sha384": sha512.New384, "sha512": sha512.New,
}

// digestName checks smtpd_tls_fingerprint_digest. md5 and sha1 still work
// (Postfix accepts them, and relay_clientcerts tables written for them
// exist), with a warning that they are broken.
func digestName(v string, warn func(string)) (string, error) {
	d := strings.ToLower(strings.TrimSpace(v))
	if _, ok := digests[d]; !ok {
		return "", fmt.Errorf("smtpd_tls_fingerprint_digest: unsupported digest %q (sha256, sha384, sha512, sha224, sha1, md5)", v)
	}
	if d == "md5" || d == "sha1" {
		warn(fmt.Sprintf("smtpd_tls_fingerprint_digest = %s: a broken digest; use sha256", d))
	}
	return d, nil
}

// Fingerprint is data's digest as Postfix prints certificate fingerprints:
// upper-case hex bytes joined by colons (relay_clientcerts,
// check_ccert_access keys).
func Fingerprint(digest string, data []byte) string {
	nh, ok := digests[digest]
	if !ok {
		nh = sha256.New
	}
	h := nh()
	h.Write(data)
	sum := strings.ToUpper(hex.EncodeToString(h.Sum(nil)))
	var b strings.Builder
	for i := 0; i < len(sum); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(sum[i : i+2])
	}
	return b.String()
}

// Session is what one handshake established, in Postfix's terms.
type Session struct {
	Protocol string // "TLSv1.3"
	Cipher   string // OpenSSL's name
	Bits     int
	// KeyExchange is "X25519" or "ECDHE (prime256v1)".
	KeyExchange string
	// The client certificate, when one was presented.
	PeerPresent                     bool
	PeerCN, IssuerCN                string
	PeerTrusted                     bool
	CertFingerprint, KeyFingerprint string
}

// Describe turns a completed handshake into a Session, verifying a client
// certificate against smtpd_tls_CAfile/_CApath (trusted or not; the
// handshake does not fail on it, as in Postfix).
func (s *Server) Describe(cs tls.ConnectionState) *Session {
	name, bits := SuiteName(cs.CipherSuite)
	out := &Session{
		Protocol:    VersionName(cs.Version),
		Cipher:      name,
		Bits:        bits,
		KeyExchange: KeyExchange(cs.CurveID),
	}
	if len(cs.PeerCertificates) == 0 {
		return out
	}
	leaf := cs.PeerCertificates[0]
	out.PeerPresent = true
	out.PeerCN = leaf.Subject.CommonName
	out.IssuerCN = leaf.Issuer.CommonName
	out.CertFingerprint = Fingerprint(s.Digest, leaf.Raw)
	out.KeyFingerprint = Fingerprint(s.Digest, leaf.RawSubjectPublicKeyInfo)
	if s.cas != nil {
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		chains, err := leaf.Verify(x509.VerifyOptions{
			Roots: s.cas, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err == nil {
			for _, ch := range chains {
				// smtpd_tls_ccert_verifydepth counts the
				// certificates above the client's.
				if len(ch)-1 <= s.depth {
					out.PeerTrusted = true
				}
			}
		}
	}
	return out
}

// Summary is the line Postfix logs at smtpd_tls_loglevel 1 and above
// (tls_log_summary): "Anonymous TLS connection established from
// host[addr]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
// key-exchange X25519". A server never "Verified" a client; a certificate
// is "Trusted" or "Untrusted".
func (t *Session) Summary(client string) string {
	kind := "Anonymous"
	if t.PeerPresent {
		kind = "Untrusted"
		if t.PeerTrusted {
			kind = "Trusted"
		}
	}
	line := fmt.Sprintf("%s TLS connection established from %s: %s with cipher %s (%d/%d bits)",
		kind, client, t.Protocol, t.Cipher, t.Bits, t.Bits)
	if t.KeyExchange != "" {
		line += " key-exchange " + t.KeyExchange
	}
	return line
}

// ClientCertComment is the Received: comment about the client's
// certificate (Postfix smtpd.c): the certificate's names, or why there
// are none.
func (t *Session) ClientCertComment(asked bool) string {
	switch {
	case t.PeerPresent:
		v := "not verified"
		if t.PeerTrusted {
			v = "verified OK"
		}
		return fmt.Sprintf("Client CN \"%s\", Issuer \"%s\" (%s)", commentSafe(t.PeerCN), commentSafe(t.IssuerCN), v)
	case asked:
		return "Client did not present a certificate"
	}
	return "No client certificate requested"
}

// commentSafe keeps a certificate name from breaking out of the Received:
// comment or the header (Postfix's comment_sanitize): no parentheses,
// quotes, backslashes or control characters.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r < ' ' || r == 0x7f, r == '(', r == ')', r == '"', r == '\\':
			return '?'
		}
		return r
	}, s)
}
