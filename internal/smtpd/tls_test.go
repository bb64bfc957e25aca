package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/queue"
	"moat/internal/tlsconf"
	"moat/internal/tlsconf/tlsconftest"
)

// tlsParams are main.cf lines for a service with an RSA certificate.
func tlsParams(t *testing.T, level string, more ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	c := tlsconftest.New(t, dir, "srv", "mx.example.com", tlsconftest.RSA, nil, false)
	p := map[string]string{
		"smtpd_tls_security_level": level,
		"smtpd_tls_cert_file":      c.CertFile,
		"smtpd_tls_key_file":       c.KeyFile,
		"smtpd_tls_loglevel":       "1",
	}
	for i := 0; i+1 < len(more); i += 2 {
		p[more[i]] = more[i+1]
	}
	return p
}

// startTLS switches the raw client to TLS after "220 2.0.0 Ready to start
// TLS".
func (c *client) startTLS(cfg *tls.Config) *tls.Conn {
	c.t.Helper()
	if cfg == nil {
		cfg = &tls.Config{InsecureSkipVerify: true}
	}
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
	return tc
}

func TestSTARTTLSAdvertised(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params map[string]string
		offer  bool
		reply  string
	}{
		{"none", map[string]string{}, false, "502 5.5.1 Error: command not implemented"},
		{"may without a certificate", map[string]string{"smtpd_tls_security_level": "may"}, false, "454 4.7.0 TLS not available due to local problem"},
		{"may", tlsParams(t, "may"), true, "220 2.0.0 Ready to start TLS"},
		{"smtpd_use_tls", tlsParams(t, "", "smtpd_use_tls", "yes"), true, "220 2.0.0 Ready to start TLS"},
		{"discarded", tlsParams(t, "may", "smtpd_discard_ehlo_keywords", "starttls"), false, "502 5.5.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.params, nil, "")
			c := h.greeted()
			ehlo := c.cmd("EHLO client.example.org", "250-mx.example.com")
			if strings.Contains(ehlo, "STARTTLS") != tc.offer {
				t.Fatalf("EHLO reply:\n%s", ehlo)
			}
			c.cmd("STARTTLS now", "501 5.5.4 Syntax: STARTTLS")
			c.cmd("STARTTLS", tc.reply)
			if !tc.offer {
				return
			}
			c.startTLS(nil)
			ehlo = c.cmd("EHLO client.example.org", "250-mx.example.com")
			if strings.Contains(ehlo, "STARTTLS") {
				t.Fatalf("STARTTLS offered inside TLS:\n%s", ehlo)
			}
			c.cmd("STARTTLS", "554 5.5.1 Error: TLS already active")
			c.cmd("QUIT", "221")
			h.waitLog("Anonymous TLS connection established from " + h.client + ": TLSv1.3 with cipher TLS_")
		})
	}
}

// TestEncryptLevel: nothing but HELO/EHLO, STARTTLS, NOOP, RSET and QUIT
// before TLS; after it, a message with Postfix's TLS Received: clause.
func TestEncryptLevel(t *testing.T) {
	h := newHarness(t, tlsParams(t, "encrypt", "smtpd_tls_received_header", "yes"), nil, "")
	c := h.greeted()
	c.cmd("EHLO client.example.org", "250-mx.example.com")
	c.cmd("MAIL FROM:<a@example.org>", "530 5.7.0 Must issue a STARTTLS command first")
	c.cmd("VRFY x", "530 5.7.0 Must issue a STARTTLS command first")
	c.cmd("NOOP", "250 2.0.0 Ok")
	c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	c.startTLS(&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}})
	// RFC 3207 §4.2: the EHLO before TLS is forgotten.
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: send HELO/EHLO first")
	c.cmd("EHLO client.example.org", "250-mx.example.com")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<b@example.com>", "250 2.1.5 Ok")
	c.cmd("DATA", "354")
	c.write(body + ".\r\n")
	id := strings.TrimPrefix(c.expect("250 2.0.0 Ok: queued as "), "250 2.0.0 Ok: queued as ")
	c.cmd("QUIT", "221")
	m, err := h.q.Open(queue.Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	content, _ := io.ReadAll(m.Content())
	want := "\r\n\t(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)\r\n\t key-exchange "
	if !strings.Contains(string(content), want) || !strings.Contains(string(content), "\t(No client certificate requested)\r\n") ||
		!strings.Contains(string(content), "with ESMTPS id "+id) {
		t.Fatalf("content:\n%s", content)
	}
	h.waitLog("Anonymous TLS connection established from " + h.client + ": TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits) key-exchange ")
}

// TestSTARTTLSInjection is CVE-2011-0411: a command pipelined after STARTTLS
// in plain text must never run inside TLS.
func TestSTARTTLSInjection(t *testing.T) {
	h := newHarness(t, tlsParams(t, "may", "smtpd_forbid_unauth_pipelining", "no"), nil, "")
	c := h.greeted()
	c.cmd("EHLO client.example.org", "250-mx.example.com")
	c.write("STARTTLS\r\nRSET\r\n")
	c.expect("220 2.0.0 Ready to start TLS")
	c.startTLS(nil)
	// The first reply inside TLS must answer EHLO, not the injected RSET.
	c.cmd("EHLO client.example.org", "250-mx.example.com")
	c.cmd("QUIT", "221")
	logs := h.waitLog("disconnect from")
	for _, l := range logs {
		if strings.Contains(l, "disconnect from") && strings.Contains(l, "rset") {
			t.Fatalf("the injected RSET ran: %s", l)
		}
	}
	h.waitLog("ehlo=2 starttls=1 quit=1 commands=4")
}

func TestWrapperMode(t *testing.T) {
	h := newHarness(t, tlsParams(t, "none", "smtpd_tls_wrappermode", "yes"), nil, "")
	raw, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { raw.Close() })
	c := &client{t: t, conn: raw}
	c.startTLS(nil)
	c.expect("220 mx.example.com ESMTP")
	ehlo := c.cmd("EHLO client.example.org", "250-mx.example.com")
	if strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("STARTTLS offered in wrapper mode:\n%s", ehlo)
	}
	c.cmd("QUIT", "221")
	h.waitLog("Anonymous TLS connection established from")

	// A plaintext client gets no greeting and the handshake error.
	p := h.dial()
	p.write("EHLO x\r\n")
	p.closed()
	h.waitLog("SSL_accept error from " + h.client)
}

// TestClientCertificates: View.TLS for restrictions, and
// smtpd_tls_req_ccert's refusal.
func TestClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := tlsconftest.New(t, dir, "ca", "Test CA", tlsconftest.ECDSA, nil, true)
	cli := tlsconftest.New(t, dir, "cli", "client.example.org", tlsconftest.ECDSA, ca, false)
	pair, err := tls.X509KeyPair(cli.CertPEM, cli.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen *TLSInfo
	p := PolicyFunc(func(ctx context.Context, st Stage, v *View) (*Decision, error) {
		if st == StageRcpt {
			mu.Lock()
			seen = v.TLS
			mu.Unlock()
		}
		return nil, nil
	})
	h := newHarness(t, tlsParams(t, "encrypt", "smtpd_tls_req_ccert", "yes", "smtpd_tls_CAfile", ca.CertFile,
		"smtpd_tls_received_header", "yes"), p, "")
	c := h.greeted()
	c.cmd("EHLO client.example.org", "250-mx.example.com")
	c.cmd("STARTTLS", "220")
	c.startTLS(&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}})
	c.cmd("EHLO client.example.org", "250-mx.example.com")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.cmd("QUIT", "221")
	mu.Lock()
	got := seen
	mu.Unlock()
	want := tlsconf.Fingerprint("sha256", cli.Cert.Raw)
	if got == nil || !got.PeerVerified || got.PeerSubject != "client.example.org" || got.PeerIssuer != "Test CA" ||
		got.CertFingerprint != want || got.KeyFingerprint != tlsconf.Fingerprint("sha256", cli.Cert.RawSubjectPublicKeyInfo) {
		t.Fatalf("View.TLS %+v, want fingerprint %s", got, want)
	}
	h.waitLog("Trusted TLS connection established from " + h.client)

	// Without a certificate: Postfix's 421 and abort record.
	c = h.greeted()
	c.cmd("EHLO client.example.org", "250-mx.example.com")
	c.cmd("STARTTLS", "220")
	c.startTLS(nil)
	c.expect("421 4.7.1 mx.example.com Error: No client certificate presented")
	c.closed()
	h.waitLog("NOQUEUE: abort: TLS from " + h.client + ": No client certificate presented")
}
