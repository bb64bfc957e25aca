package test

// SMTP AUTH end to end (issue 7): the real binary with moat's own password
// table (written by `moat saslpasswd`) and with the real Dovecot, driven by
// swaks, Python's smtplib and msmtp inside STARTTLS; fail2ban's stock
// postfix filter (mode=auth) over the mail log.

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/testutil/dovecot"
)

// authFixture is a directory with a self-signed certificate and a
// password table holding alice (password "alice-pw", with a CRAM-MD5
// secret) and bob ("bob-pw", hash and SCRAM only), made by the real
// `moat saslpasswd`.
func authFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := runTool(t, 60*time.Second, "", "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
		"-keyout", filepath.Join(dir, "key.pem"), "-out", filepath.Join(dir, "cert.pem"), "-days", "2",
		"-subj", "/CN=mx.moat.test"); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	// The admin's main.cf names the table; saslpasswd edits its source
	// and rebuilds the index as postmap does.
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("smtpd_sasl_password_maps = hash:"+dir+"/sasl_passwd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, pw, flag string }{{"alice@moat.test", "alice-pw", "-C"}, {"bob@moat.test", "bob-pw", "-p"}} {
		if out, err := runTool(t, 30*time.Second, u.pw+"\n", moatBin, "saslpasswd", "-c", dir, u.flag, u.name); err != nil {
			t.Fatalf("saslpasswd %s: %v\n%s", u.name, err, out)
		}
	}
	return dir
}

// authMainCF: STARTTLS offered, AUTH only inside it (moat's default
// smtpd_tls_auth_only = yes), authentication opens relaying.
func authMainCF(fix, saslType, saslPath string) string {
	cf := fmt.Sprintf(`smtpd_tls_security_level = may
smtpd_tls_cert_file = %[1]s/cert.pem
smtpd_tls_key_file = %[1]s/key.pem
smtpd_sasl_auth_enable = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_sasl_type = %[2]s
`, fix, saslType)
	if saslType == "moat" {
		cf += "smtpd_sasl_password_maps = hash:" + fix + "/sasl_passwd\n"
	} else {
		cf += "smtpd_sasl_path = " + saslPath + "\n"
	}
	return cf
}

// tlsQueued is swaks' record of the final 250 inside TLS ("<~").
var tlsQueued = regexp.MustCompile(`<~\s+250 2\.0\.0 Ok: queued as `)

// swaksAuth runs swaks with STARTTLS and AUTH to an outside recipient
// (relaying needs the login) and returns its output and error.
func swaksAuth(t *testing.T, s *server, mech, user, pw string, extra ...string) (string, error) {
	t.Helper()
	args := append([]string{"--server", s.addr(), "--helo", "client.example.org", "--tls",
		"--auth", mech, "--auth-user", user, "--auth-password", pw,
		"--from", user, "--to", "someone@example.net", "--header", "Subject: auth " + mech}, extra...)
	return runTool(t, 60*time.Second, "", "swaks", args...)
}

func TestAuthSwaksBuiltin(t *testing.T) {
	fix := authFixture(t)
	s := startServer(t, authMainCF(fix, "moat", ""))
	for _, tc := range []struct{ mech, user, pw string }{
		{"PLAIN", "alice@moat.test", "alice-pw"},
		{"LOGIN", "bob@moat.test", "bob-pw"},
		{"CRAM-MD5", "alice@moat.test", "alice-pw"},
	} {
		out, err := swaksAuth(t, s, tc.mech, tc.user, tc.pw)
		if err != nil || !strings.Contains(out, "235 2.7.0 Authentication successful") || !tlsQueued.MatchString(out) {
			t.Fatalf("%s: %v\n%s", tc.mech, err, out)
		}
		s.waitLog(`client=\S+, sasl_method=`+tc.mech+`, sasl_username=`+regexp.QuoteMeta(tc.user), 10*time.Second)
	}
	// A logged-in message says so in Received: (RFC 3848 ESMTPSA), and
	// smtpd_sasl_authenticated_header is off by default, so the login
	// name stays out of the header.
	if os.Geteuid() == 0 {
		if out, err := swaksAuth(t, s, "PLAIN", "alice@moat.test", "alice-pw", "--to", "user@localhost",
			"--header", "Subject: auth received"); err != nil {
			t.Fatalf("local delivery with AUTH: %v\n%s", err, out)
		}
		_, msg := waitMaildirSubject(t, s, s.maildir("user"), "auth received")
		if !strings.Contains(msg, " with ESMTPSA id ") || strings.Contains(msg, "Authenticated sender") {
			t.Errorf("Received: of an authenticated TLS submission:\n%s", msg)
		}
	}
	// The EHLO inside TLS lists the four mechanisms; outside, none.
	out, _ := swaksAuth(t, s, "PLAIN", "alice@moat.test", "alice-pw", "--quit-after", "AUTH")
	if !strings.Contains(out, "250-AUTH SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN") {
		t.Errorf("EHLO in TLS:\n%s", out)
	}
	out, err := runTool(t, 30*time.Second, "", "swaks", "--server", s.addr(), "--helo", "client.example.org",
		"--auth", "PLAIN", "--auth-user", "alice@moat.test", "--auth-password", "alice-pw", "--quit-after", "AUTH")
	if err == nil || strings.Contains(out, "AUTH ") && strings.Contains(out, "250-AUTH") {
		t.Errorf("AUTH offered without TLS:\n%s", out)
	}
	// Without a login the outside recipient is refused.
	out, _ = runTool(t, 30*time.Second, "", "swaks", "--server", s.addr(), "--helo", "client.example.org", "--tls",
		"--from", "x@example.org", "--to", "someone@example.net", "--quit-after", "RCPT")
	if !strings.Contains(out, "554 5.7.1") {
		t.Errorf("relay without AUTH:\n%s", out)
	}
	// bob has no CRAM-MD5 secret; wrong passwords fail with Postfix's
	// reply and warning.
	for _, tc := range []struct{ mech, user, pw string }{
		{"CRAM-MD5", "bob@moat.test", "bob-pw"},
		{"LOGIN", "alice@moat.test", "wrong"},
		{"PLAIN", "nobody@moat.test", "x"},
	} {
		out, _ := swaksAuth(t, s, tc.mech, tc.user, tc.pw)
		if !strings.Contains(out, "535 5.7.8 Error: authentication failed: authentication failure") {
			t.Errorf("%s %s: no 535\n%s", tc.mech, tc.user, out)
		}
	}
	s.waitLogCount(`warning: \S+\[127\.0\.0\.1\]: SASL (LOGIN|PLAIN|CRAM-MD5) authentication failed: authentication failure, sasl_username=`, 3, 10*time.Second)
	if strings.Contains(s.log(), "alice-pw") || strings.Contains(s.log(), "bob-pw") {
		t.Error("a password reached the mail log")
	}
	fail2banAuth(t, s, 3)
}

// fail2banAuth runs Debian's fail2ban-regex with the stock postfix filter
// in auth mode (the postfix-sasl jail) over the mail log: every SASL
// failure line must match.
func fail2banAuth(t *testing.T, s *server, want int) {
	t.Helper()
	filter := "/etc/fail2ban/filter.d/postfix.conf"
	if _, err := os.Stat(filter); err != nil {
		t.Skipf("fail2ban filter missing: %v", err)
	}
	out, err := runTool(t, 60*time.Second, "", "fail2ban-regex", filepath.Join(s.dir, "maillog"), filter+"[mode=auth]")
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Lines: \d+ lines, \d+ ignored, (\d+) matched`).FindStringSubmatch(out)
	n := strings.Count(s.log(), "authentication failed:")
	if m == nil || m[1] != fmt.Sprint(n) || n < want {
		t.Errorf("fail2ban matched %v of %d failure lines (want at least %d)\n%s", m, n, want, out)
	}
}

func TestAuthSmtplibAndMsmtp(t *testing.T) {
	fix := authFixture(t)
	s := startServer(t, authMainCF(fix, "moat", ""))
	script := fmt.Sprintf(`
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", %d, timeout=30)
s.ehlo("client.example.org")
assert not s.has_extn("auth"), "AUTH offered in clear"
s.starttls(context=ctx)
s.ehlo("client.example.org")
print("mechs:", s.esmtp_features["auth"])
try:
    s.login("bob@moat.test", "wrong")
    raise SystemExit("wrong password accepted")
except smtplib.SMTPAuthenticationError as e:
    print("refused:", e.smtp_code, e.smtp_error.decode())
s.login("bob@moat.test", "bob-pw")
s.sendmail("bob@moat.test", ["someone@example.net"], "Subject: smtplib\r\n\r\nhi\r\n")
s.quit()
print("sent")
`, s.port)
	out, err := runTool(t, 60*time.Second, script, "python3", "-")
	if err != nil || !strings.Contains(out, "sent") || !strings.Contains(out, "refused: 535 5.7.8") {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	s.waitLog(`sasl_username=bob@moat.test`, 10*time.Second)

	// msmtp (GNU SASL underneath) as a mail client: STARTTLS, then its
	// own choice of mechanism, then each one forced — SCRAM-SHA-256 with
	// a client that checks the server's signature.
	for _, tc := range []struct{ auth, user, pw, method string }{
		{"on", "alice@moat.test", "alice-pw", `\S+`},
		{"scram-sha-256", "bob@moat.test", "bob-pw", "SCRAM-SHA-256"},
		{"cram-md5", "alice@moat.test", "alice-pw", "CRAM-MD5"},
		{"login", "bob@moat.test", "bob-pw", "LOGIN"},
	} {
		out, err = runTool(t, 60*time.Second, "Subject: msmtp "+tc.auth+"\n\nbody\n", "msmtp",
			"--host=127.0.0.1", fmt.Sprintf("--port=%d", s.port), "--domain=client.example.org",
			"--tls=on", "--tls-starttls=on", "--tls-certcheck=off",
			"--auth="+tc.auth, "--user="+tc.user, "--passwordeval=echo "+tc.pw,
			"--from="+tc.user, "--", "someone@example.net")
		if err != nil {
			t.Fatalf("msmtp --auth=%s: %v\n%s", tc.auth, err, out)
		}
		line := s.waitLog(`client=\S+, sasl_method=`+tc.method+`, sasl_username=`+regexp.QuoteMeta(tc.user), 10*time.Second)
		t.Logf("msmtp --auth=%s: %s", tc.auth, line)
	}
	out, err = runTool(t, 60*time.Second, "Subject: x\n\nbody\n", "msmtp",
		"--host=127.0.0.1", fmt.Sprintf("--port=%d", s.port), "--domain=client.example.org",
		"--tls=on", "--tls-starttls=on", "--tls-certcheck=off",
		"--auth=scram-sha-256", "--user=bob@moat.test", "--passwordeval=echo wrong",
		"--from=bob@moat.test", "--", "someone@example.net")
	if err == nil || !strings.Contains(out, "535 5.7.8") {
		t.Errorf("msmtp SCRAM with a wrong password: %v\n%s", err, out)
	}
}

func TestAuthSwaksDovecot(t *testing.T) {
	d := dovecot.Start(t, dovecot.Options{Users: map[string]string{"carol@moat.test": "carol-pw"}})
	fix := authFixture(t)
	for _, path := range []string{d.AuthSocket, "inet:" + d.AuthAddr} {
		s := startServer(t, authMainCF(fix, "dovecot", path))
		for _, mech := range []string{"PLAIN", "LOGIN", "CRAM-MD5"} {
			out, err := swaksAuth(t, s, mech, "carol@moat.test", "carol-pw")
			if err != nil || !strings.Contains(out, "235 2.7.0") || !tlsQueued.MatchString(out) {
				t.Fatalf("%s via %s: %v\n%s", mech, path, err, out)
			}
		}
		out, _ := swaksAuth(t, s, "LOGIN", "carol@moat.test", "bad")
		if !strings.Contains(out, "535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6") {
			t.Errorf("wrong password via %s:\n%s", path, out)
		}
		s.waitLog(`warning: \S+\[127\.0\.0\.1\]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=carol@moat.test`, 10*time.Second)
		fail2banAuth(t, s, 1)
		s.stop()
	}
}

// TestAuthSubmission is seed 002's mail submission agent: the submission
// row with its -o overrides (TLS required, AUTH on, only logged-in users
// relay, each only as their own address through smtpd_sender_login_maps)
// and an smtps row, next to a port-25 row where a login opens nothing.
func TestAuthSubmission(t *testing.T) {
	fix := authFixture(t)
	sub, smtps := freePort(t), freePort(t)
	master := fmt.Sprintf(`127.0.0.1:{{PORT}} inet n - n - - smtpd
127.0.0.1:%d inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
127.0.0.1:%d inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
`, sub, smtps)
	cf := fmt.Sprintf(`smtpd_tls_security_level = may
smtpd_tls_cert_file = %[1]s/cert.pem
smtpd_tls_key_file = %[1]s/key.pem
smtpd_sasl_type = moat
smtpd_sasl_password_maps = hash:%[1]s/sasl_passwd
smtpd_sender_login_maps = inline:{ alice@moat.test=alice@moat.test, bob@moat.test=bob@moat.test }
`, fix)
	s := startWithMaster(t, cf, master)
	subAddr, smtpsAddr := fmt.Sprintf("127.0.0.1:%d", sub), fmt.Sprintf("127.0.0.1:%d", smtps)

	// Port 25's row: AUTH is not enabled there at all.
	out, _ := runTool(t, 30*time.Second, "", "swaks", "--server", s.addr(), "--helo", "client.example.org", "--tls",
		"--auth", "PLAIN", "--auth-user", "alice@moat.test", "--auth-password", "alice-pw", "--quit-after", "AUTH")
	if strings.Contains(out, "235 ") {
		t.Errorf("login on the port-25 row:\n%s", out)
	}

	// Submission: nothing before STARTTLS.
	d := dial(t, subAddr)
	d.expect("220 ")
	d.cmd("EHLO client.example.org", "250")
	d.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice@moat.test\x00alice-pw")), "530 5.7.0 Must issue a STARTTLS command first")
	d.cmd("MAIL FROM:<alice@moat.test>", "530 5.7.0 Must issue a STARTTLS command first")

	// Inside TLS: alice may send as herself only.
	for _, tc := range []struct {
		from, want string
	}{
		{"bob@moat.test", "553 5.7.1 <bob@moat.test>: Sender address rejected: not owned by user alice@moat.test"},
		{"alice@moat.test", "250 2.0.0 Ok: queued as"},
	} {
		out, _ := runTool(t, 60*time.Second, "", "swaks", "--server", subAddr, "--helo", "client.example.org", "--tls",
			"--auth", "LOGIN", "--auth-user", "alice@moat.test", "--auth-password", "alice-pw",
			"--from", tc.from, "--to", "someone@example.net")
		if !strings.Contains(out, tc.want) {
			t.Errorf("submission as %s: want %q\n%s", tc.from, tc.want, out)
		}
	}
	// Without a login nothing is accepted.
	out, _ = runTool(t, 60*time.Second, "", "swaks", "--server", subAddr, "--helo", "client.example.org", "--tls",
		"--from", "x@example.org", "--to", "user@moat.test", "--quit-after", "RCPT")
	if !strings.Contains(out, "554 5.7.1") {
		t.Errorf("submission without AUTH:\n%s", out)
	}
	// smtps: implicit TLS (swaks --tlsc), SCRAM-capable server, CRAM-MD5 here.
	out, err := runTool(t, 60*time.Second, "", "swaks", "--server", smtpsAddr, "--helo", "client.example.org", "--tlsc",
		"--auth", "CRAM-MD5", "--auth-user", "alice@moat.test", "--auth-password", "alice-pw",
		"--from", "alice@moat.test", "--to", "someone@example.net")
	if err != nil || !tlsQueued.MatchString(out) {
		t.Errorf("smtps: %v\n%s", err, out)
	}
	s.waitLog(`postfix/smtps/smtpd\[\d+\]: \S+: client=\S+, sasl_method=CRAM-MD5, sasl_username=alice@moat.test`, 10*time.Second)
}

// TestAuthDovecotJail is Postfix's SASL_README set-up: Dovecot's auth
// socket at QUEUE/private/auth and smtpd_sasl_path = private/auth, which
// a chrooted smtpd (master.cf chroot y, running as mail_owner) reaches
// relative to its working directory, the jail's root.
func TestAuthDovecotJail(t *testing.T) {
	fix := authFixture(t)
	s := startWithMaster(t, authMainCF(fix, "dovecot", "private/auth"), "127.0.0.1:{{PORT}} inet n - y - - smtpd\n")
	private := filepath.Join(s.dir, "spool", "private")
	if _, err := os.Stat(private); err != nil {
		t.Fatalf("queue's private/: %v", err)
	}
	dovecot.Start(t, dovecot.Options{Users: map[string]string{"dave@moat.test": "dave-pw"}, AuthSocket: filepath.Join(private, "auth")})
	out, err := swaksAuth(t, s, "PLAIN", "dave@moat.test", "dave-pw")
	if err != nil || !strings.Contains(out, "235 2.7.0") || !tlsQueued.MatchString(out) {
		t.Fatalf("jailed smtpd through private/auth: %v\n%s\n%s", err, out, s.log())
	}
	s.waitLog(`sasl_method=PLAIN, sasl_username=dave@moat.test`, 10*time.Second)
}

// TestAuthCheckSASLAccess: restrictions see the login —
// check_sasl_access refuses one user, permit_sasl_authenticated admits
// the other.
func TestAuthCheckSASLAccess(t *testing.T) {
	fix := authFixture(t)
	if err := os.WriteFile(filepath.Join(fix, "sasl_access"), []byte("bob@moat.test REJECT account suspended\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cf := authMainCF(fix, "moat", "") + `smtpd_relay_restrictions =
smtpd_recipient_restrictions = check_sasl_access texthash:` + fix + `/sasl_access, permit_sasl_authenticated, reject
`
	s := startServer(t, cf)
	out, _ := swaksAuth(t, s, "PLAIN", "bob@moat.test", "bob-pw")
	if !strings.Contains(out, "554 5.7.1 <bob@moat.test>: SASL login name rejected: account suspended") {
		t.Errorf("bob:\n%s", out)
	}
	out, err := swaksAuth(t, s, "PLAIN", "alice@moat.test", "alice-pw")
	if err != nil || !tlsQueued.MatchString(out) {
		t.Errorf("alice: %v\n%s", err, out)
	}
}
