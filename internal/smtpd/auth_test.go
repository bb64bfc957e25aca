package smtpd

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"moat/internal/anvil"
	"moat/internal/cleanup"
	"moat/internal/sasl"
	"moat/internal/testutil/dovecot"
)

// authParams are main.cf lines for the built-in backend with alice (all
// three secrets) and bob (password hash only), password "pw1" each.
func authParams(t *testing.T, more ...string) map[string]string {
	t.Helper()
	var b strings.Builder
	for _, u := range []struct {
		name        string
		cram, scram bool
	}{{"alice@example.org", true, true}, {"bob@example.org", false, false}} {
		v, err := sasl.NewCredentials([]byte("pw1"), sasl.HashOptions{Memory: 64, Time: 1, CRAM: u.cram, SCRAM: u.scram})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s\n", u.name, v)
	}
	p := filepath.Join(t.TempDir(), "sasl_passwd")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	params := map[string]string{
		"smtpd_sasl_auth_enable":   "yes",
		"smtpd_sasl_type":          "moat",
		"smtpd_sasl_password_maps": "texthash:" + p,
		// No TLS in these tests: AUTH is allowed in clear here only.
		"smtpd_tls_auth_only": "no",
	}
	for i := 0; i+1 < len(more); i += 2 {
		params[more[i]] = more[i+1]
	}
	return params
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// ehloLines sends EHLO and returns the reply.
func (c *client) ehlo() string {
	c.t.Helper()
	return c.cmd("EHLO client.example.org", "250")
}

func TestAuthAdvertised(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params []string
		want   []string // lines the EHLO reply has
		not    []string // and has not
	}{
		{"all", nil, []string{"250-AUTH SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN"}, []string{"AUTH="}},
		{"broken clients", []string{"broken_sasl_auth_clients", "yes"}, []string{"250-AUTH SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN", "250-AUTH=SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN"}, nil},
		{"noplaintext", []string{"smtpd_sasl_security_options", "noanonymous, noplaintext"}, []string{"250-AUTH SCRAM-SHA-256 CRAM-MD5\r\n"}, []string{"PLAIN"}},
		{"mechanism filter", []string{"smtpd_sasl_mechanism_filter", "!cram-md5, static:rest"}, []string{"250-AUTH SCRAM-SHA-256 PLAIN LOGIN"}, []string{"CRAM-MD5"}},
		{"tls_auth_only without TLS", []string{"smtpd_tls_auth_only", "yes"}, nil, []string{"AUTH"}},
		{"exceptions", []string{"smtpd_sasl_exceptions_networks", "127.0.0.0/8"}, nil, []string{"AUTH"}},
		{"discarded", []string{"smtpd_discard_ehlo_keywords", "auth"}, nil, []string{"AUTH"}},
		{"disabled", []string{"smtpd_sasl_auth_enable", "no"}, nil, []string{"AUTH"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, authParams(t, tc.params...), nil, "")
			c := h.greeted()
			r := c.ehlo() + "\r\n"
			for _, w := range tc.want {
				if !strings.Contains(r, w) {
					t.Errorf("EHLO reply lacks %q:\n%s", w, r)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(r, w) {
					t.Errorf("EHLO reply has %q:\n%s", w, r)
				}
			}
		})
	}
}

func TestAuthPlainThenMail(t *testing.T) {
	var mu sync.Mutex
	var seen []View
	pol := PolicyFunc(func(_ context.Context, st Stage, v *View) (*Decision, error) {
		mu.Lock()
		defer mu.Unlock()
		if st == StageRcpt {
			seen = append(seen, *v)
		}
		return nil, nil
	})
	h := newHarness(t, authParams(t), pol, "")
	c := h.greeted()
	c.cmd("AUTH PLAIN "+b64("\x00alice@example.org\x00pw1"), "503 5.5.1 Error: send HELO/EHLO first")
	c.ehlo()
	c.cmd("AUTH PLAIN "+b64("\x00alice@example.org\x00pw1"), "235 2.7.0 Authentication successful")
	c.cmd("AUTH PLAIN "+b64("\x00alice@example.org\x00pw1"), "503 5.5.1 Error: already authenticated")
	c.cmd("MAIL FROM:<alice@example.org> AUTH=alice@example.org", "250 2.1.0")
	c.cmd("AUTH LOGIN", "503 5.5.1 Error: already authenticated")
	c.cmd("RCPT TO:<x@example.com>", "250 2.1.5")
	h.waitLog("client=" + h.client + ", sasl_method=PLAIN, sasl_username=alice@example.org, sasl_sender=alice@example.org")
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0].SASLUser != "alice@example.org" || seen[0].SASLMethod != "PLAIN" || seen[0].SASLSender != "alice@example.org" {
		t.Errorf("views %+v", seen)
	}
}

func TestAuthExchanges(t *testing.T) {
	h := newHarness(t, authParams(t), nil, "")
	c := h.greeted()
	c.ehlo()
	// PLAIN without an initial response: an empty challenge.
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd(b64("\x00bob@example.org\x00pw1"), "235 2.7.0")

	c = h.greeted()
	c.ehlo()
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(b64("bob@example.org"), "334 UGFzc3dvcmQ6")
	c.cmd(b64("wrong"), "535 5.7.8 Error: authentication failed: authentication failure")
	h.waitLog("warning: " + h.client + ": SASL LOGIN authentication failed: authentication failure, sasl_username=bob@example.org")
	// LOGIN with the user name as initial response.
	c.cmd("AUTH LOGIN "+b64("bob@example.org"), "334 UGFzc3dvcmQ6")
	c.cmd("*", "501 5.7.0 Authentication aborted")
	h.waitLog("warning: " + h.client + ": SASL LOGIN authentication aborted")
	c.cmd("AUTH CRAM-MD5", "334 ")
	c.cmd("*", "501 5.7.0")
	c.cmd("AUTH DIGEST-MD5", "535 5.7.8 Error: authentication failed: Invalid authentication mechanism")
	c.cmd("AUTH", "501 5.5.4 Syntax: AUTH mechanism")
	c.cmd("AUTH PLAIN !!!", "501 5.5.2")
	// CRAM-MD5: alice has the secret; bob has none and fails.
	for _, u := range []struct{ user, want string }{{"bob@example.org", "535 5.7.8"}, {"alice@example.org", "235 2.7.0"}} {
		r := c.cmd("AUTH CRAM-MD5", "334 ")
		ch, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(r, "334 "))
		if err != nil || !strings.HasSuffix(string(ch), "@mx.example.com>") {
			t.Fatalf("challenge %q", ch)
		}
		m := hmac.New(md5.New, []byte("pw1"))
		m.Write(ch)
		c.cmd(b64(u.user+" "+hex.EncodeToString(m.Sum(nil))), u.want)
	}
	lines := h.logs()
	if hasLog(lines, "pw1") {
		t.Error("a password reached the log")
	}
}

func TestAuthRefusals(t *testing.T) {
	h := newHarness(t, authParams(t, "smtpd_sasl_auth_enable", "no"), nil, "")
	c := h.greeted()
	c.ehlo()
	c.cmd("AUTH PLAIN", "503 5.5.1 Error: authentication not enabled")
	c.cmd("MAIL FROM:<a@example.org> AUTH=<>", "5")

	// smtpd_tls_auth_only (moat's default) without TLS: RFC 4954's 538.
	h = newHarness(t, authParams(t, "smtpd_tls_auth_only", "yes"), nil, "")
	c = h.greeted()
	c.ehlo()
	c.cmd("AUTH PLAIN "+b64("\x00bob@example.org\x00pw1"), "538 5.7.11 Encryption required for requested authentication mechanism")

	// A plaintext mechanism allowed only after STARTTLS.
	h = newHarness(t, authParams(t, "smtpd_sasl_security_options", "noanonymous, noplaintext", "smtpd_sasl_tls_security_options", "noanonymous"), nil, "")
	c = h.greeted()
	c.ehlo()
	c.cmd("AUTH LOGIN", "538 5.7.11")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("AUTH CRAM-MD5", "503 5.5.1 Error: MAIL transaction in progress")

	// smtpd_sasl_response_limit.
	h = newHarness(t, authParams(t, "smtpd_sasl_response_limit", "100"), nil, "")
	c = h.greeted()
	c.ehlo()
	c.cmd("AUTH LOGIN", "334")
	c.cmd(strings.Repeat("QUFB", 40), "500 5.5.6 SASL response limit exceeded")
	c.cmd("NOOP", "250")
}

// TestAuthRateLimit: smtpd_client_auth_rate_limit through anvil, with
// Postfix's reply and warning.
func TestAuthRateLimit(t *testing.T) {
	h := newHarness(t, authParams(t, "smtpd_client_auth_rate_limit", "2", "smtpd_client_event_limit_exceptions", noExceptions), nil, "",
		withAnvil(anvil.NewTable(anvil.Options{})))
	c := h.greeted()
	c.ehlo()
	for i := 0; i < 2; i++ {
		c.cmd("AUTH PLAIN "+b64("\x00bob@example.org\x00bad"), "535 5.7.8")
	}
	c.cmd("AUTH PLAIN "+b64("\x00bob@example.org\x00pw1"), "450 4.7.1 Error: too many AUTH commands from 127.0.0.1")
	h.waitLog("warning: AUTH command rate limit exceeded: 3 from " + h.client + " for service smtp")
}

// authReceived and resetAuth are the hooks the Received: header and
// STARTTLS use.
func TestAuthHooks(t *testing.T) {
	s := &session{set: &settings{}}
	ri := cleanup.ReceivedInfo{Protocol: "ESMTPS"}
	s.authReceived(&ri)
	if ri.Protocol != "ESMTPS" || ri.AuthSender != "" {
		t.Errorf("without login: %+v", ri)
	}
	s.auth = authState{user: "alice", method: "PLAIN"}
	s.set.auth.header = true
	s.authReceived(&ri)
	if ri.Protocol != "ESMTPSA" || ri.AuthSender != "alice" {
		t.Errorf("with login: %+v", ri)
	}
	s.resetAuth()
	if s.auth.user != "" {
		t.Error("resetAuth kept the login")
	}
}

// TestAuthDovecot: the real Dovecot behind AUTH, as Postfix's
// SASL_README sets it up; the failure warning carries Dovecot's last
// challenge as reason, as Postfix's does.
func TestAuthDovecot(t *testing.T) {
	d := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice@example.com": "pw1"}})
	h := newHarness(t, map[string]string{
		"smtpd_sasl_auth_enable": "yes",
		"smtpd_sasl_type":        "dovecot",
		"smtpd_sasl_path":        d.AuthSocket,
		"smtpd_tls_auth_only":    "no",
	}, nil, "")
	c := h.greeted()
	r := c.ehlo()
	if !strings.Contains(r, "250-AUTH PLAIN LOGIN CRAM-MD5") {
		t.Errorf("EHLO %s", r)
	}
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(b64("alice@example.com"), "334 UGFzc3dvcmQ6")
	c.cmd(b64("bad"), "535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6")
	h.waitLog("warning: " + h.client + ": SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=alice@example.com")
	c.cmd("AUTH PLAIN "+b64("\x00alice@example.com\x00pw1"), "235 2.7.0")
	c.cmd("MAIL FROM:<alice@example.com>", "250")
	c.cmd("RCPT TO:<x@example.net>", "250")
	h.waitLog("sasl_method=PLAIN, sasl_username=alice@example.com")
}

// TestAuthCyrusType: Postfix's default smtpd_sasl_type = cyrus keeps the
// service up without AUTH, with a warning naming the fix.
func TestAuthCyrusType(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_sasl_auth_enable": "yes", "smtpd_tls_auth_only": "no"}, nil, "")
	c := h.greeted()
	if r := c.ehlo(); strings.Contains(r, "AUTH") {
		t.Errorf("AUTH offered: %s", r)
	}
	c.cmd("AUTH PLAIN", "503 5.5.1 Error: authentication not enabled")
	h.waitLog("warning: smtpd_sasl_auth_enable = yes with smtpd_sasl_type = cyrus")
}

// TestAuthInsideTLS: moat's default smtpd_tls_auth_only = yes offers AUTH
// only after STARTTLS; the TLS security options apply there.
func TestAuthInsideTLS(t *testing.T) {
	p := authParams(t)
	delete(p, "smtpd_tls_auth_only") // moat's default: yes
	for k, v := range tlsParams(t, "may") {
		p[k] = v
	}
	h := newHarness(t, p, nil, "")
	c := h.greeted()
	if r := c.ehlo(); strings.Contains(r, "AUTH") {
		t.Errorf("AUTH offered in clear: %s", r)
	}
	c.cmd("AUTH PLAIN "+b64("\x00bob@example.org\x00pw1"), "538 5.7.11")
	c.cmd("STARTTLS", "220 2.0.0")
	c.startTLS(nil)
	c.cmd("AUTH PLAIN "+b64("\x00bob@example.org\x00pw1"), "503 5.5.1 Error: send HELO/EHLO first")
	if r := c.ehlo(); !strings.Contains(r, "250-AUTH SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN") {
		t.Errorf("EHLO in TLS: %s", r)
	}
	c.cmd("AUTH PLAIN "+b64("\x00bob@example.org\x00pw1"), "235 2.7.0")

	// Plaintext mechanisms only inside TLS, by the security options.
	p = authParams(t, "smtpd_sasl_security_options", "noanonymous, noplaintext", "smtpd_sasl_tls_security_options", "noanonymous")
	for k, v := range tlsParams(t, "may") {
		p[k] = v
	}
	h = newHarness(t, p, nil, "")
	c = h.greeted()
	if r := c.ehlo(); !strings.Contains(r, "250-AUTH SCRAM-SHA-256 CRAM-MD5\r\n") {
		t.Errorf("EHLO in clear: %s", r)
	}
	c.cmd("AUTH LOGIN", "538 5.7.11")
	c.cmd("STARTTLS", "220 2.0.0")
	c.startTLS(nil)
	if r := c.ehlo(); !strings.Contains(r, "250-AUTH SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN") {
		t.Errorf("EHLO in TLS: %s", r)
	}
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(b64("bob@example.org"), "334")
	c.cmd(b64("pw1"), "235 2.7.0")
}

// TestAuthDovecotDown: without the auth server AUTH is not offered, and a
// client that tries anyway gets a temporary failure, not a logged
// "authentication failed" that fail2ban would ban it for.
func TestAuthDovecotDown(t *testing.T) {
	h := newHarness(t, map[string]string{
		"smtpd_sasl_auth_enable": "yes",
		"smtpd_sasl_type":        "dovecot",
		"smtpd_sasl_path":        filepath.Join(t.TempDir(), "auth"),
		"smtpd_tls_auth_only":    "no",
	}, nil, "")
	c := h.greeted()
	if r := c.ehlo(); strings.Contains(r, "AUTH") {
		t.Errorf("AUTH offered: %s", r)
	}
	c.cmd("AUTH PLAIN "+b64("\x00a\x00b"), "454 4.7.0 Temporary authentication failure")
	lines := h.waitLog("SASL: Connect to Dovecot auth socket")
	if hasLog(lines, "authentication failed") {
		t.Errorf("failure logged as an authentication failure:\n%s", strings.Join(lines, "\n"))
	}
}

// TestAuthForgottenAfterSTARTTLS: RFC 3207 §4.2 — a login made in clear
// (only possible with smtpd_tls_auth_only = no) does not survive STARTTLS.
func TestAuthForgottenAfterSTARTTLS(t *testing.T) {
	var mu sync.Mutex
	var users []string
	pol := PolicyFunc(func(_ context.Context, st Stage, v *View) (*Decision, error) {
		if st == StageRcpt {
			mu.Lock()
			users = append(users, v.SASLUser)
			mu.Unlock()
		}
		return nil, nil
	})
	p := authParams(t)
	for k, v := range tlsParams(t, "may") {
		p[k] = v
	}
	h := newHarness(t, p, pol, "")
	c := h.greeted()
	c.ehlo()
	c.cmd("AUTH PLAIN "+b64("\x00bob@example.org\x00pw1"), "235 2.7.0")
	c.cmd("STARTTLS", "220 2.0.0")
	c.startTLS(nil)
	c.ehlo()
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.cmd("RSET", "250")
	c.cmd("AUTH PLAIN "+b64("\x00alice@example.org\x00pw1"), "235 2.7.0")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	mu.Lock()
	defer mu.Unlock()
	if len(users) != 2 || users[0] != "" || users[1] != "alice@example.org" {
		t.Errorf("logins seen at RCPT: %q", users)
	}
}
