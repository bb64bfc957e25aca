package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"moat/internal/config"
)

// ClientLevel is smtp_tls_security_level (postconf(5), TLS_README "Client
// TLS security levels"), the levels moat's smtp(8) implements.
type ClientLevel int

// The client levels: each one above "may" never sends mail in clear.
// ClientDane and ClientDaneOnly (RFC 7672) are decided per MX host from
// its TLSA records (the smtp agent's dane.go); a connection that DANE
// authenticates carries a *DANE.
const (
	ClientNone ClientLevel = iota
	ClientMay
	ClientEncrypt
	ClientVerify
	ClientSecure
	ClientDane
	ClientDaneOnly
)

// String is the parameter value.
func (l ClientLevel) String() string {
	return [...]string{"none", "may", "encrypt", "verify", "secure", "dane", "dane-only"}[l]
}

// DANE reports whether the level asks for DANE (dane or dane-only).
func (l ClientLevel) DANE() bool { return l == ClientDane || l == ClientDaneOnly }

// Mandatory reports whether the level forbids plaintext, which selects
// smtp_tls_mandatory_protocols and _ciphers as in Postfix.
func (l ClientLevel) Mandatory() bool { return l >= ClientEncrypt }

// ParseClientLevel reads a level name. fingerprint is refused: moat does
// not implement it yet, and mail that asks for it must wait, not go out
// with less.
func ParseClientLevel(v string) (ClientLevel, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "none":
		return ClientNone, nil
	case "may":
		return ClientMay, nil
	case "encrypt":
		return ClientEncrypt, nil
	case "verify":
		return ClientVerify, nil
	case "secure":
		return ClientSecure, nil
	case "dane":
		return ClientDane, nil
	case "dane-only":
		return ClientDaneOnly, nil
	case "fingerprint":
		return 0, fmt.Errorf("TLS security level %q is not implemented yet in this version of moat", v)
	}
	return 0, fmt.Errorf("invalid TLS security level %q (none, may, encrypt, dane, dane-only, verify or secure)", v)
}

// Client is the smtp(8) side of TLS, read once per agent from the
// smtp_tls_* parameters: the per-level crypto/tls settings, the trust
// anchors and the client certificate.
type Client struct {
	// Level is smtp_tls_security_level (or the old smtp_enforce_tls /
	// smtp_use_tls), the level of destinations without a policy entry.
	Level ClientLevel
	// VerifyMatch and SecureMatch are smtp_tls_verify_cert_match and
	// smtp_tls_secure_cert_match.
	VerifyMatch, SecureMatch []string
	// ServerName is smtp_tls_servername: "" (no SNI, Postfix's default),
	// "hostname", "nexthop" or a literal name.
	ServerName string
	// LogLevel is smtp_tls_loglevel; HandshakeTimeout is
	// smtp_starttls_timeout.
	LogLevel         int
	HandshakeTimeout time.Duration

	roots         *x509.CertPool
	certs         []tls.Certificate
	opportunistic *tls.Config
	mandatory     *tls.Config
}

// clientLevel reads smtp_tls_security_level, falling back to the older
// smtp_enforce_tls (encrypt) and smtp_use_tls (may) when it is empty, as
// postconf(5) documents.
func clientLevel(c *config.Config) (ClientLevel, error) {
	if v := strings.TrimSpace(c.Get("smtp_tls_security_level")); v != "" {
		l, err := ParseClientLevel(v)
		if err != nil {
			return 0, fmt.Errorf("smtp_tls_security_level: %w", err)
		}
		return l, nil
	}
	if on, err := c.Bool("smtp_enforce_tls"); err != nil {
		return 0, fmt.Errorf("smtp_enforce_tls: %w", err)
	} else if on {
		return ClientEncrypt, nil
	}
	if on, err := c.Bool("smtp_use_tls"); err != nil {
		return 0, fmt.Errorf("smtp_use_tls: %w", err)
	} else if on {
		return ClientMay, nil
	}
	return ClientNone, nil
}

// NewClient reads the smtp_tls_* parameters and loads the CA and client
// certificate files (before any privilege drop, as Postfix's smtp(8) does
// before it chroots). warn receives what crypto/tls cannot express.
func NewClient(c *config.Config, warn func(string)) (*Client, error) {
	cl := &Client{ServerName: strings.TrimSpace(c.Get("smtp_tls_servername"))}
	var err error
	if cl.Level, err = clientLevel(c); err != nil {
		return nil, err
	}
	if cl.VerifyMatch, err = matchList(c, "smtp_tls_verify_cert_match"); err != nil {
		return nil, err
	}
	if cl.SecureMatch, err = matchList(c, "smtp_tls_secure_cert_match"); err != nil {
		return nil, err
	}
	n, err := c.Int("smtp_tls_loglevel")
	if err != nil {
		return nil, fmt.Errorf("smtp_tls_loglevel: %w", err)
	}
	cl.LogLevel = int(n)
	if cl.HandshakeTimeout, err = c.Duration("smtp_starttls_timeout"); err != nil {
		return nil, fmt.Errorf("smtp_starttls_timeout: %w", err)
	}
	if cl.roots, err = loadCAs(strings.TrimSpace(c.Get("smtp_tls_CAfile")), strings.TrimSpace(c.Get("smtp_tls_CApath"))); err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	if cl.roots == nil {
		// Postfix would use OpenSSL's default paths only with
		// tls_append_default_CA; moat trusts the system roots when no
		// CA is configured, so verify works out of the box.
		if cl.roots, err = x509.SystemCertPool(); err != nil {
			cl.roots = x509.NewCertPool()
		}
	}
	if cf := strings.TrimSpace(c.Get("smtp_tls_cert_file")); cf != "" {
		kf := strings.TrimSpace(c.Get("smtp_tls_key_file"))
		if kf == "" {
			kf = cf
		}
		cert, err := loadPair("smtp_tls_cert_file", cf, kf)
		if err != nil {
			return nil, err
		}
		cl.certs = []tls.Certificate{cert}
	}
	for i, p := range [][2]string{{"smtp_tls_protocols", "smtp_tls_ciphers"}, {"smtp_tls_mandatory_protocols", "smtp_tls_mandatory_ciphers"}} {
		cfg, err := cl.config(c, p[0], p[1], i == 1, warn)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			cl.opportunistic = cfg
		} else {
			cl.mandatory = cfg
		}
	}
	return cl, nil
}

// matchList reads a cert match parameter; its elements are separated by
// colons as well as commas and spaces (postconf(5) smtp_tls_verify_cert_match).
func matchList(c *config.Config, name string) ([]string, error) {
	l, err := c.List(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return SplitMatch(strings.Join(l, " ")), nil
}

// SplitMatch splits a match= attribute or *_cert_match value at colons,
// commas and white space.
func SplitMatch(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool {
		return r == ':' || r == ',' || r == ' ' || r == '\t' || r == '\n'
	})
}

// config maps one protocol/cipher pair onto crypto/tls, as the server side
// does. Verification is done after the handshake (Verify), because Postfix
// matches names its own way and logs untrusted peers at "may".
func (cl *Client) config(c *config.Config, protoParam, cipherParam string, mandatory bool, warn func(string)) (*tls.Config, error) {
	excl := map[string]string{"smtp_tls_exclude_ciphers": c.Get("smtp_tls_exclude_ciphers")}
	if mandatory {
		excl["smtp_tls_mandatory_exclude_ciphers"] = c.Get("smtp_tls_mandatory_exclude_ciphers")
	}
	min, max, suites, ws, err := versionsAndSuites(c, protoParam, cipherParam, excl)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		warn(w)
	}
	return &tls.Config{
		MinVersion:   min,
		MaxVersion:   max,
		CipherSuites: suites,
		Certificates: cl.certs,
		// Verified by Verify after the handshake, against the roots and
		// Postfix's match strategies; the handshake itself never fails
		// on trust, so "may" and "encrypt" still reach a server with a
		// self-signed certificate.
		InsecureSkipVerify: true,
	}, nil
}

// Config is the crypto/tls configuration for one connection at level l,
// with serverName for SNI ("" sends none).
func (cl *Client) Config(l ClientLevel, serverName string) *tls.Config {
	var cfg *tls.Config
	if l.Mandatory() {
		cfg = cl.mandatory.Clone()
	} else {
		cfg = cl.opportunistic.Clone()
	}
	cfg.ServerName = serverName
	return cfg
}

// SNI is the name smtp_tls_servername asks to send: none, the server's
// host name ("hostname"), the next-hop domain ("nexthop") or a literal.
func (cl *Client) SNI(host, nexthop string) string {
	switch strings.ToLower(cl.ServerName) {
	case "":
		return ""
	case "hostname":
		return host
	case "nexthop":
		return nexthop
	}
	return cl.ServerName
}

// Verify checks a completed handshake as Postfix's tls_client does:
// trusted means the chain leads to a trust anchor (smtp_tls_CAfile,
// _CApath, or the system roots); matched means, in addition, that a name
// in the certificate matches one of the match strategies (hostname: the
// server's host name; nexthop: the next-hop domain; dot-nexthop: a
// subdomain of it; a literal name; ".domain" for its subdomains).
func (cl *Client) Verify(cs tls.ConnectionState, match []string, host, nexthop string) (trusted, matched bool) {
	if len(cs.PeerCertificates) == 0 {
		return false, false
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: cl.roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		return false, false
	}
	names := leaf.DNSNames
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		// RFC 6125 section 6.4.4: the CN only when there are no DNS-ID.
		names = []string{leaf.Subject.CommonName}
	}
	for _, m := range match {
		for _, n := range names {
			if MatchName(m, n, host, nexthop) {
				return true, true
			}
		}
	}
	return true, false
}

// MatchName reports whether the certificate name certName satisfies one
// match strategy (postconf(5) smtp_tls_verify_cert_match), with the
// wildcard rule of RFC 6125 section 6.4.3 (a "*" as the whole left-most
// label stands for exactly one label).
func MatchName(strategy, certName, host, nexthop string) bool {
	certName = strings.ToLower(strings.TrimSuffix(certName, "."))
	var want string
	sub := false
	switch s := strings.ToLower(strategy); s {
	case "hostname":
		want = host
	case "nexthop":
		want = nexthop
	case "dot-nexthop":
		want, sub = nexthop, true
	default:
		if strings.HasPrefix(s, ".") {
			want, sub = s[1:], true
		} else {
			want = s
		}
	}
	want = strings.ToLower(strings.TrimSuffix(want, "."))
	if !sub {
		return hostMatches(want, certName)
	}
	if want == "" || certName == "" {
		return false
	}
	// Any name below want; a wildcard certificate for a subdomain of
	// want matches too.
	return strings.HasSuffix(certName, "."+want) && !strings.HasPrefix(certName, "*.") ||
		strings.HasPrefix(certName, "*.") && strings.HasSuffix(certName[1:], "."+want)
}

// ServerSummary is the line Postfix's smtp(8) logs at smtp_tls_loglevel 1
// and above (tls_log_summary): "Verified TLS connection established to
// host[addr]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256
// bits) key-exchange X25519". Verified: trusted and name matched;
// Trusted: chain only; Untrusted: neither; Anonymous: no certificate.
func ServerSummary(cs tls.ConnectionState, trusted, matched bool, server string) string {
	kind := "Anonymous"
	switch {
	case len(cs.PeerCertificates) == 0:
	case trusted && matched:
		kind = "Verified"
	case trusted:
		kind = "Trusted"
	default:
		kind = "Untrusted"
	}
	name, bits := SuiteName(cs.CipherSuite)
	line := fmt.Sprintf("%s TLS connection established to %s: %s with cipher %s (%d/%d bits)",
		kind, server, VersionName(cs.Version), name, bits, bits)
	if k := KeyExchange(cs.CurveID); cs.CurveID != 0 && k != "" {
		line += " key-exchange " + k
	}
	return line
}
