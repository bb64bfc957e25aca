package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"moat/internal/config"
)

// Level is smtpd_tls_security_level (postconf(5)).
type Level int

// The server's security levels: no STARTTLS, STARTTLS offered, STARTTLS
// required before mail (RFC 3207 §4: "530 Must issue a STARTTLS command
// first").
const (
	LevelNone Level = iota
	LevelMay
	LevelEncrypt
)

// String is the parameter value.
func (l Level) String() string {
	return [...]string{"none", "may", "encrypt"}[l]
}

// Server is one service's TLS setup, built once per service generation (so
// reload re-reads certificates while sessions in progress keep theirs).
type Server struct {
	// Level is the effective security level; Wrapper is
	// smtpd_tls_wrappermode (TLS from the first byte, RFC 8314).
	Level   Level
	Wrapper bool
	// Config is nil when the service offers no TLS (level none, or may
	// without a certificate).
	Config *tls.Config
	// AskCert and ReqCert are smtpd_tls_ask_ccert and
	// smtpd_tls_req_ccert (the latter only where TLS is mandatory).
	AskCert, ReqCert bool
	// Digest is smtpd_tls_fingerprint_digest.
	Digest string
	// LogLevel is smtpd_tls_loglevel; ReceivedHeader is
	// smtpd_tls_received_header.
	LogLevel       int
	ReceivedHeader bool
	// HandshakeTimeout is smtpd_starttls_timeout.
	HandshakeTimeout time.Duration

	cas   *x509.CertPool
	depth int
}

// Mandatory reports whether clients must use TLS: encrypt or wrapper mode.
// It selects the smtpd_tls_mandatory_* parameters, as Postfix does.
func (s *Server) Mandatory() bool { return s.Wrapper || s.Level == LevelEncrypt }

// Offered reports whether STARTTLS may be offered (or wrapper mode runs).
func (s *Server) Offered() bool { return s.Config != nil }

// level reads smtpd_tls_security_level, falling back to the older
// smtpd_enforce_tls and smtpd_use_tls when it is empty (postconf(5)).
func level(c *config.Config) (Level, error) {
	switch v := strings.TrimSpace(c.Get("smtpd_tls_security_level")); v {
	case "none":
		return LevelNone, nil
	case "may":
		return LevelMay, nil
	case "encrypt":
		return LevelEncrypt, nil
	case "":
	default:
		return 0, fmt.Errorf("smtpd_tls_security_level: invalid value %q (none, may or encrypt)", v)
	}
	if on, err := c.Bool("smtpd_enforce_tls"); err != nil {
		return 0, err
	} else if on {
		return LevelEncrypt, nil
	}
	if on, err := c.Bool("smtpd_use_tls"); err != nil {
		return 0, err
	} else if on {
		return LevelMay, nil
	}
	return LevelNone, nil
}

// NewServer reads a service's TLS parameters and loads its certificates,
// keys and CAs. Call it before the privilege drop and the jail: key files are
// usually readable by root only, as Postfix's smtpd reads them before it
// chroots and drops to mail_owner. warn receives what cannot be mapped onto
// crypto/tls.
func NewServer(c *config.Config, warn func(string)) (*Server, error) {
	s := &Server{}
	var err error
	if s.Level, err = level(c); err != nil {
		return nil, err
	}
	bools := map[string]*bool{
		"smtpd_tls_wrappermode": &s.Wrapper, "smtpd_tls_ask_ccert": &s.AskCert,
		"smtpd_tls_req_ccert": &s.ReqCert, "smtpd_tls_received_header": &s.ReceivedHeader,
	}
	for name, p := range bools {
		if *p, err = c.Bool(name); err != nil {
			return nil, err
		}
	}
	if n, err := c.Int("smtpd_tls_loglevel"); err != nil {
		return nil, err
	} else {
		s.LogLevel = int(n)
	}
	if n, err := c.Int("smtpd_tls_ccert_verifydepth"); err != nil {
		return nil, err
	} else {
		s.depth = int(n)
	}
	if s.HandshakeTimeout, err = c.Duration("smtpd_starttls_timeout"); err != nil {
		return nil, err
	}
	if s.Digest, err = digestName(c.Get("smtpd_tls_fingerprint_digest"), warn); err != nil {
		return nil, err
	}
	if s.ReqCert {
		if !s.Mandatory() {
			warn("smtpd_tls_req_ccert: ignored when TLS is optional (smtpd_tls_security_level = may)")
			s.ReqCert = false
		} else {
			s.AskCert = true
		}
	}
	if s.Level == LevelNone && !s.Wrapper {
		return s, nil
	}
	certs, err := loadCerts(c)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		if s.Mandatory() {
			return nil, fmt.Errorf("TLS is required (%s) but no server certificate is configured (smtpd_tls_chain_files, smtpd_tls_cert_file or smtpd_tls_eccert_file)", s.mandatoryWhy())
		}
		warn("No server certs available. TLS won't be enabled")
		return s, nil
	}
	if s.cas, err = loadCAs(c.Get("smtpd_tls_CAfile"), c.Get("smtpd_tls_CApath")); err != nil {
		return nil, err
	}
	if s.Config, err = s.tlsConfig(c, certs, warn); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) mandatoryWhy() string {
	if s.Wrapper {
		return "smtpd_tls_wrappermode = yes"
	}
	return "smtpd_tls_security_level = encrypt"
}

// loadCerts reads smtpd_tls_chain_files, which when set replaces the
// per-algorithm pairs (postconf(5)), or else the RSA and ECDSA pairs.
func loadCerts(c *config.Config) ([]tls.Certificate, error) {
	files, err := c.List("smtpd_tls_chain_files")
	if err != nil {
		return nil, err
	}
	if len(files) > 0 {
		return loadChainFiles(files)
	}
	var certs []tls.Certificate
	// ECDSA first: where a client supports both, the smaller, faster
	// signature wins.
	for _, p := range [][2]string{{"smtpd_tls_eccert_file", "smtpd_tls_eckey_file"}, {"smtpd_tls_cert_file", "smtpd_tls_key_file"}} {
		cf := strings.TrimSpace(c.Get(p[0]))
		if cf == "" {
			continue
		}
		cert, err := loadPair(p[0], cf, strings.TrimSpace(c.Get(p[1])))
		if err != nil {
			return nil, err
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// versionsAndSuites maps a protocol and a cipher parameter (with their
// exclusion lists) onto crypto/tls versions and TLS 1.2 suites, for the
// server and the client alike; what cannot be expressed comes back as
// warnings. Exclusions that leave no TLS 1.2 suite mean TLS 1.3 only.
func versionsAndSuites(c *config.Config, protoParam, cipherParam string, excl map[string]string) (min, max uint16, suites []uint16, ws []string, err error) {
	min, max, ws, err = versionRange(protoParam, c.Get(protoParam))
	if err != nil {
		return 0, 0, nil, nil, err
	}
	custom := func(name string) bool {
		def, _ := c.Default(name)
		raw, set := c.Raw(name)
		return set && strings.TrimSpace(raw) != strings.TrimSpace(def)
	}
	suites, ws2, err := cipherSuites(cipherParam, c.Get(cipherParam), custom, excl)
	if err != nil {
		return 0, 0, nil, nil, err
	}
	ws = append(ws, ws2...)
	if len(suites) == 0 {
		if max < tls.VersionTLS13 {
			return 0, 0, nil, nil, fmt.Errorf("%s: the exclusions leave no TLS 1.2 cipher suite", cipherParam)
		}
		ws = append(ws, fmt.Sprintf("%s: the exclusions leave no TLS 1.2 cipher suite; only TLSv1.3 is offered", cipherParam))
		min = tls.VersionTLS13
	}
	return min, max, suites, ws, nil
}

// tlsConfig is the crypto/tls side: versions, suites, client certificates,
// session tickets.
func (s *Server) tlsConfig(c *config.Config, certs []tls.Certificate, warn func(string)) (*tls.Config, error) {
	protoParam, cipherParam := "smtpd_tls_protocols", "smtpd_tls_ciphers"
	excl := map[string]string{"smtpd_tls_exclude_ciphers": c.Get("smtpd_tls_exclude_ciphers")}
	if s.Mandatory() {
		protoParam, cipherParam = "smtpd_tls_mandatory_protocols", "smtpd_tls_mandatory_ciphers"
		excl["smtpd_tls_mandatory_exclude_ciphers"] = c.Get("smtpd_tls_mandatory_exclude_ciphers")
	}
	min, max, suites, ws, err := versionsAndSuites(c, protoParam, cipherParam, excl)
	if err != nil {
		return nil, err
	}
	ws = append(ws, unmapped(c)...)
	for _, w := range ws {
		warn(w)
	}
	tickets, err := c.Bool("smtpd_tls_session_tickets")
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:   min,
		MaxVersion:   max,
		CipherSuites: suites,
		// Go's server-side tickets break mail from some large senders
		// (golang/go#70232): off unless the moat parameter says yes.
		SessionTicketsDisabled: !tickets,
	}
	if len(certs) == 1 {
		cfg.Certificates = certs
	} else {
		cfg.GetCertificate = pickCertificate(certs)
	}
	if s.AskCert {
		// Verified after the handshake, as Postfix does: an untrusted
		// certificate is logged "Untrusted", not a handshake failure.
		cfg.ClientAuth = tls.RequestClientCert
	}
	return cfg, nil
}

// unmapped warns about OpenSSL-only parameters set away from their
// defaults (docs/TLS.md lists them).
func unmapped(c *config.Config) []string {
	var ws []string
	for _, p := range []struct{ name, why string }{
		{"smtpd_tls_eecdh_grade", "Go chooses its key exchange groups (X25519MLKEM768, X25519, P-256, P-384)"},
		{"tls_eecdh_auto_curves", "Go chooses its key exchange groups"},
		{"tls_eecdh_strong_curve", "Go chooses its key exchange groups"},
		{"tls_eecdh_ultra_curve", "Go chooses its key exchange groups"},
		{"tls_preempt_cipherlist", "Go orders the suites itself"},
		{"tls_ssl_options", "OpenSSL options do not exist in Go"},
		{"tls_disable_workarounds", "OpenSSL bug workarounds do not exist in Go"},
		{"tls_server_sni_maps", "not supported yet: one certificate set per service"},
		{"smtpd_tls_dh1024_param_file", "Go offers no finite-field DHE; ECDHE only"},
		{"smtpd_tls_session_cache_database", "no session cache; smtpd_tls_session_tickets turns on Go's tickets"},
		{"tls_session_ticket_cipher", "Go uses its own ticket keys and cipher"},
		{"tls_config_file", "OpenSSL configuration files do not apply"},
		{"tls_config_name", "OpenSSL configuration files do not apply"},
	} {
		raw, set := c.Raw(p.name)
		if !set {
			continue
		}
		if def, _ := c.Default(p.name); strings.TrimSpace(raw) == strings.TrimSpace(def) {
			continue
		}
		ws = append(ws, fmt.Sprintf("%s: cannot be mapped onto Go's crypto/tls (%s); ignored", p.name, p.why))
	}
	return ws
}
