package tlsconf

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"moat/internal/config"
	"moat/internal/tlsconf/tlsconftest"
)

func load(t *testing.T, mainCf string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCf), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newServer(t *testing.T, mainCf string) (*Server, []string, error) {
	t.Helper()
	var ws []string
	s, err := NewServer(load(t, mainCf), func(m string) { ws = append(ws, m) })
	return s, ws, err
}

func TestProtocols(t *testing.T) {
	for _, tc := range []struct {
		v        string
		min, max uint16
		warn     bool
		err      bool
	}{
		{">=TLSv1.2", tls.VersionTLS12, tls.VersionTLS13, false, false},
		{">=TLSv1", tls.VersionTLS12, tls.VersionTLS13, true, false},
		{"!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", tls.VersionTLS12, tls.VersionTLS13, false, false},
		{"!SSLv2 !SSLv3", tls.VersionTLS12, tls.VersionTLS13, true, false},
		{"TLSv1.3", tls.VersionTLS13, tls.VersionTLS13, false, false},
		{">=TLSv1.2 <=TLSv1.2", tls.VersionTLS12, tls.VersionTLS12, false, false},
		{"TLSv1.2:TLSv1.3", tls.VersionTLS12, tls.VersionTLS13, false, false},
		{"<=TLSv1.1", 0, 0, true, true},
		{"TLSv1.4", 0, 0, false, true},
		{"", tls.VersionTLS12, tls.VersionTLS13, true, false},
	} {
		min, max, ws, err := versionRange("smtpd_tls_protocols", tc.v)
		if (err != nil) != tc.err || min != tc.min || max != tc.max || (len(ws) > 0) != tc.warn {
			t.Errorf("%q: min %x max %x warnings %q err %v", tc.v, min, max, ws, err)
		}
	}
}

func TestCipherExclusions(t *testing.T) {
	none := func(string) bool { return false }
	ids, ws, err := cipherSuites("smtpd_tls_ciphers", "medium", none, map[string]string{
		"smtpd_tls_exclude_ciphers": "aNULL, RC4, 3DES, MD5, DES-CBC3-SHA, ECDSA, AES128",
	})
	if err != nil || len(ws) != 0 {
		t.Fatalf("err %v warnings %q", err, ws)
	}
	want := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305}
	if !slices.Equal(ids, want) {
		t.Fatalf("suites %v, want %v", ids, want)
	}
	_, ws, _ = cipherSuites("smtpd_tls_ciphers", "export", func(string) bool { return true }, map[string]string{"x": "BOGUS"})
	if len(ws) != 3 {
		t.Fatalf("warnings %q, want grade, custom list and unknown alias", ws)
	}
	if _, _, err := cipherSuites("smtpd_tls_ciphers", "strong", none, nil); err == nil {
		t.Fatal("bad grade accepted")
	}
	// No weak suite is ever in the offer.
	for _, s := range tls12Suites {
		name := tls.CipherSuiteName(s.id)
		if strings.Contains(name, "CBC") || strings.Contains(name, "RC4") || strings.Contains(name, "3DES") || !strings.HasPrefix(name, "TLS_ECDHE_") {
			t.Errorf("weak suite %s", name)
		}
	}
}

func TestLevels(t *testing.T) {
	dir := t.TempDir()
	rsa := tlsconftest.New(t, dir, "rsa", "mx.example.com", tlsconftest.RSA, nil, false)
	for _, tc := range []struct {
		cf    string
		level Level
		on    bool
		err   bool
	}{
		{"", LevelNone, false, false},
		{"smtpd_use_tls = yes\n", LevelMay, false, false},
		{"smtpd_enforce_tls = yes\n", LevelEncrypt, false, true},
		{"smtpd_tls_security_level = may\nsmtpd_enforce_tls = yes\n", LevelMay, false, false},
		{"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = " + rsa.CertFile + "\nsmtpd_tls_key_file = " + rsa.KeyFile + "\n", LevelMay, true, false},
		{"smtpd_tls_security_level = encrypt\nsmtpd_tls_cert_file = " + rsa.CertFile + "\nsmtpd_tls_key_file = " + rsa.KeyFile + "\n", LevelEncrypt, true, false},
		{"smtpd_tls_wrappermode = yes\n", LevelNone, false, true},
		{"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = /nonexistent\n", 0, false, true},
	} {
		s, _, err := newServer(t, tc.cf)
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v", tc.cf, err)
			continue
		}
		if err == nil && (s.Level != tc.level || s.Offered() != tc.on) {
			t.Errorf("%q: level %v offered %v", tc.cf, s.Level, s.Offered())
		}
	}
}

func TestChainFilesAndChoice(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.New(t, dir, "ca", "Test CA", tlsconftest.ECDSA, nil, true)
	ec := tlsconftest.New(t, dir, "ec", "mx.example.com", tlsconftest.ECDSA, ca, false)
	rsa := tlsconftest.New(t, dir, "rsa", "mx.example.com", tlsconftest.RSA, ca, false)
	// One file, two sets, RSA first: key, leaf, CA each.
	var b []byte
	for _, c := range []*tlsconftest.Cert{rsa, ec} {
		b = append(b, c.KeyPEM...)
		b = append(b, c.CertPEM...)
		b = append(b, ca.CertPEM...)
	}
	chain := filepath.Join(dir, "chain.pem")
	if err := os.WriteFile(chain, b, 0o600); err != nil {
		t.Fatal(err)
	}
	certs, err := ParseChainFile(b)
	if err != nil || len(certs) != 2 || len(certs[0].Certificate) != 2 {
		t.Fatalf("ParseChainFile: %d sets, err %v", len(certs), err)
	}
	s, _, err := newServer(t, "smtpd_tls_security_level = may\nsmtpd_tls_chain_files = "+chain+"\n"+
		"smtpd_tls_cert_file = /nonexistent/ignored\n")
	if err != nil {
		t.Fatal(err)
	}
	// A client that only takes ECDSA gets the ECDSA chain, one that
	// only takes RSA the RSA chain.
	for _, tc := range []struct {
		suites []uint16
		want   string
	}{
		{[]uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, "*ecdsa.PublicKey"},
		{[]uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, "*rsa.PublicKey"},
	} {
		got := handshakeKey(t, s.Config, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: tc.suites})
		if got != tc.want {
			t.Errorf("suites %v: server key %s, want %s", tc.suites, got, tc.want)
		}
	}
	if _, err := ParseChainFile(ca.CertPEM); err == nil {
		t.Error("certificate without key accepted")
	}
	if _, err := ParseChainFile(ec.KeyPEM); err == nil {
		t.Error("key without certificate accepted")
	}
}

func TestFingerprintAndDescribe(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.New(t, dir, "ca", "Test CA", tlsconftest.ECDSA, nil, true)
	srv := tlsconftest.New(t, dir, "srv", "mx.example.com", tlsconftest.RSA, nil, false)
	good := tlsconftest.New(t, dir, "good", "client.example.com", tlsconftest.ECDSA, ca, false)
	self := tlsconftest.New(t, dir, "self", "self.example.com", tlsconftest.ECDSA, nil, false)
	s, ws, err := newServer(t, "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = "+srv.CertFile+
		"\nsmtpd_tls_key_file = "+srv.KeyFile+"\nsmtpd_tls_ask_ccert = yes\nsmtpd_tls_CAfile = "+ca.CertFile+
		"\nsmtpd_tls_fingerprint_digest = sha1\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || !strings.Contains(ws[0], "sha1") {
		t.Fatalf("warnings %q", ws)
	}
	for _, tc := range []struct {
		c       *tlsconftest.Cert
		summary string
		comment string
	}{
		{nil, "Anonymous TLS connection established from h[192.0.2.1]: TLSv1.3 with cipher TLS_", "Client did not present a certificate"},
		{good, "Trusted TLS connection established", `Client CN "client.example.com", Issuer "Test CA" (verified OK)`},
		{self, "Untrusted TLS connection established", `Client CN "self.example.com", Issuer "self.example.com" (not verified)`},
	} {
		cc := &tls.Config{InsecureSkipVerify: true}
		if tc.c != nil {
			pair, err := tls.X509KeyPair(tc.c.CertPEM, tc.c.KeyPEM)
			if err != nil {
				t.Fatal(err)
			}
			cc.Certificates = []tls.Certificate{pair}
		}
		st := handshake(t, s.Config, cc)
		info := s.Describe(st)
		if sum := info.Summary("h[192.0.2.1]"); !strings.HasPrefix(sum, tc.summary) || !strings.Contains(sum, "(256/256 bits)") && !strings.Contains(sum, "(128/128 bits)") {
			t.Errorf("summary %q, want prefix %q", sum, tc.summary)
		}
		if got := info.ClientCertComment(true); got != tc.comment {
			t.Errorf("comment %q, want %q", got, tc.comment)
		}
		if tc.c != nil {
			want := Fingerprint("sha1", tc.c.Cert.Raw)
			if info.CertFingerprint != want || len(want) != 59 || strings.ToUpper(want) != want {
				t.Errorf("fingerprint %q, want %q", info.CertFingerprint, want)
			}
		}
	}
}

func TestUnmappedWarnings(t *testing.T) {
	dir := t.TempDir()
	srv := tlsconftest.New(t, dir, "srv", "mx.example.com", tlsconftest.RSA, nil, false)
	_, ws, err := newServer(t, "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = "+srv.CertFile+
		"\nsmtpd_tls_key_file = "+srv.KeyFile+"\ntls_ssl_options = NO_TICKET\nsmtpd_tls_eecdh_grade = ultra\n"+
		"tls_high_cipherlist = ECDHE+AESGCM\nsmtpd_tls_ciphers = high\n")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(ws, "\n")
	for _, p := range []string{"tls_ssl_options", "smtpd_tls_eecdh_grade", "tls_high_cipherlist"} {
		if !strings.Contains(joined, p+":") {
			t.Errorf("no warning names %s; have:\n%s", p, joined)
		}
	}
}

// handshake runs a TLS handshake over an in-memory pipe.
func handshake(t *testing.T, srv, cli *tls.Config) tls.ConnectionState {
	t.Helper()
	a, b := netPipe(t)
	sc := tls.Server(a, srv)
	done := make(chan error, 1)
	go func() { done <- sc.Handshake() }()
	cc := tls.Client(b, cli)
	if err := cc.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	return sc.ConnectionState()
}

func handshakeKey(t *testing.T, srv, cli *tls.Config) string {
	t.Helper()
	a, b := netPipe(t)
	go func() { _ = tls.Server(a, srv).Handshake() }()
	cc := tls.Client(b, cli)
	if err := cc.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	return typeName(cc.ConnectionState().PeerCertificates[0].PublicKey)
}

// TestSessionTickets: off unless smtpd_tls_session_tickets = yes
// (golang/go#70232); the floor and the suites are set either way.
func TestSessionTickets(t *testing.T) {
	dir := t.TempDir()
	srv := tlsconftest.New(t, dir, "srv", "mx.example.com", tlsconftest.RSA, nil, false)
	base := "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = " + srv.CertFile + "\nsmtpd_tls_key_file = " + srv.KeyFile + "\n"
	for _, tc := range []struct {
		extra    string
		disabled bool
	}{{"", true}, {"smtpd_tls_session_tickets = yes\n", false}} {
		s, _, err := newServer(t, base+tc.extra)
		if err != nil {
			t.Fatal(err)
		}
		if s.Config.SessionTicketsDisabled != tc.disabled || s.Config.MinVersion != tls.VersionTLS12 || len(s.Config.CipherSuites) != len(tls12Suites) {
			t.Errorf("%q: tickets disabled %v, min %x, %d suites", tc.extra, s.Config.SessionTicketsDisabled, s.Config.MinVersion, len(s.Config.CipherSuites))
		}
	}
}

// TestCApath: the CAs in smtpd_tls_CApath verify a client certificate as
// smtpd_tls_CAfile does.
func TestCApath(t *testing.T) {
	dir := t.TempDir()
	caDir := t.TempDir()
	ca := tlsconftest.New(t, caDir, "ca", "Path CA", tlsconftest.ECDSA, nil, true)
	if err := os.Remove(ca.KeyFile); err != nil {
		t.Fatal(err)
	}
	srv := tlsconftest.New(t, dir, "srv", "mx.example.com", tlsconftest.RSA, nil, false)
	cli := tlsconftest.New(t, dir, "cli", "client.example.org", tlsconftest.ECDSA, ca, false)
	s, _, err := newServer(t, "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = "+srv.CertFile+
		"\nsmtpd_tls_key_file = "+srv.KeyFile+"\nsmtpd_tls_ask_ccert = yes\nsmtpd_tls_CApath = "+caDir+"\n")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(cli.CertPEM, cli.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	info := s.Describe(handshake(t, s.Config, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}}))
	if !info.PeerTrusted || info.PeerCN != "client.example.org" {
		t.Fatalf("%+v", info)
	}
}
