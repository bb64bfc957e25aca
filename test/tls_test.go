package test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"moat/internal/tlsconf"
	"moat/internal/tlsconf/tlsconftest"
)

// Server TLS end to end (issue 7 item 1): the real binary under a root
// master, each smtpd child jailed (chroot y) and dropped to mail_owner, its
// key files root's own with mode 0600; real clients (openssl s_client,
// swaks, Python's smtplib, testssl.sh) on a STARTTLS port, an encrypt-only
// port and an smtps port.

// tlsServer is a running moat with three TLS services.
type tlsServer struct {
	*server
	sub, smtps int
	rsa, ec    *tlsconftest.Cert
	certDir    string
}

const tlsMasterCF = `127.0.0.1:{{PORT}} inet n - y - - smtpd
127.0.0.1:{{SUB}} inet n - y - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
127.0.0.1:{{SMTPS}} inet n - y - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
`

func startTLS(t *testing.T) *tlsServer {
	t.Helper()
	certDir := t.TempDir()
	ts := &tlsServer{certDir: certDir, sub: freePort(t), smtps: freePort(t)}
	ts.rsa = tlsconftest.New(t, certDir, "rsa", "mx.moat.test", tlsconftest.RSA, nil, false)
	ts.ec = tlsconftest.New(t, certDir, "ec", "mx.moat.test", tlsconftest.ECDSA, nil, false)
	extra := fmt.Sprintf(`smtpd_tls_security_level = may
smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpd_tls_eccert_file = %s
smtpd_tls_eckey_file = %s
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_forbid_unauth_pipelining = no
mynetworks = 127.0.0.0/8
`, ts.rsa.CertFile, ts.rsa.KeyFile, ts.ec.CertFile, ts.ec.KeyFile)
	mcf := strings.ReplaceAll(tlsMasterCF, "{{SUB}}", strconv.Itoa(ts.sub))
	mcf = strings.ReplaceAll(mcf, "{{SMTPS}}", strconv.Itoa(ts.smtps))
	ts.server = startWithMaster(t, extra, mcf)
	return ts
}

func (ts *tlsServer) smtpsAddr() string { return fmt.Sprintf("127.0.0.1:%d", ts.smtps) }

// startTLSOn upgrades a raw dialogue after "220 2.0.0 Ready to start TLS".
func (d *dialogue) startTLS(cfg *tls.Config) *tls.Conn {
	d.t.Helper()
	tc := tls.Client(d.c, cfg)
	if err := tc.Handshake(); err != nil {
		d.t.Fatalf("handshake: %v", err)
	}
	d.c = tc
	d.r.Reset(tc)
	return tc
}

func TestTLSEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the master drops each smtpd child to mail_owner in a jail")
	}
	ts := startTLS(t)

	t.Run("KeysReadBeforeTheDrop", func(t *testing.T) {
		for _, k := range []string{ts.rsa.KeyFile, ts.ec.KeyFile} {
			st, err := os.Stat(k)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 || st.Sys().(*syscall.Stat_t).Uid != 0 {
				t.Fatalf("%s: mode %v uid %d, want 0600 root", k, st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid)
			}
		}
		// The child that answers runs as mail_owner in its jail, yet
		// serves TLS with those keys.
		pids := ts.childPIDs(fmt.Sprintf("127.0.0.1:%d/inet", ts.port))
		if len(pids) == 0 {
			t.Fatal("no smtpd child")
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pids[0]))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "\nUid:\t"+strconv.Itoa(uidOf(t, "postfix"))+"\t") {
			t.Fatalf("smtpd child is not mail_owner:\n%s", b)
		}
		out, err := runTool(t, 30*time.Second, "QUIT\r\n", "openssl", "s_client", "-starttls", "smtp",
			"-connect", ts.addr(), "-brief", "-verify_quiet")
		if err != nil || !strings.Contains(out, "Protocol version: TLSv1.3") {
			t.Fatalf("openssl s_client: %v\n%s", err, out)
		}
		ts.waitLog(`postfix/smtpd\[\d+\]: Anonymous TLS connection established from \S+\[127\.0\.0\.1\]: TLSv1\.3 with cipher TLS_\S+ \(\d+/\d+ bits\) key-exchange \S+`, 10*time.Second)
	})

	t.Run("OpensslOldProtocolsRefused", func(t *testing.T) {
		for _, p := range []string{"-tls1", "-tls1_1"} {
			out, err := runTool(t, 30*time.Second, "QUIT\r\n", "openssl", "s_client", "-starttls", "smtp",
				"-connect", ts.addr(), "-brief", p, "-cipher", "DEFAULT@SECLEVEL=0")
			if err == nil && strings.Contains(out, "Protocol version") {
				t.Fatalf("%s accepted:\n%s", p, out)
			}
		}
		// ECDSA and RSA clients each get their certificate.
		for _, tc := range []struct{ sigalgs, want string }{{"ECDSA+SHA256", "ECDSA"}, {"rsa_pss_rsae_sha256", "RSA-PSS"}} {
			out, err := runTool(t, 30*time.Second, "QUIT\r\n", "openssl", "s_client", "-starttls", "smtp",
				"-connect", ts.addr(), "-brief", "-sigalgs", tc.sigalgs)
			if err != nil || !strings.Contains(out, "Signature type: "+tc.want+"\n") {
				t.Fatalf("sigalgs %s: %v\n%s", tc.sigalgs, err, out)
			}
		}
	})

	t.Run("SwaksSTARTTLS", func(t *testing.T) {
		out, err := runTool(t, 60*time.Second, "", "swaks", "--server", ts.addr(), "--tls",
			"--from", "a@example.org", "--to", "user@mx.moat.test", "--helo", "client.example.org")
		if err != nil || !strings.Contains(out, "250 2.0.0 Ok: queued as") {
			t.Fatalf("swaks --tls: %v\n%s", err, out)
		}
		ts.waitDelivered("user", 1, 30*time.Second)
		msg := readOneMaildir(t, ts.maildir("user"))
		if !strings.Contains(msg, "\n\t(using TLSv1.3 with cipher TLS_") || !strings.Contains(msg, "(No client certificate requested)") ||
			!strings.Contains(msg, "with ESMTPS id") {
			t.Fatalf("Received: has no TLS clause:\n%s", msg)
		}
	})

	t.Run("SwaksWrapperMode", func(t *testing.T) {
		out, err := runTool(t, 60*time.Second, "", "swaks", "--server", ts.smtpsAddr(), "--tlsc",
			"--from", "a@example.org", "--to", "user@mx.moat.test", "--helo", "client.example.org")
		if err != nil || !strings.Contains(out, "250 2.0.0 Ok: queued as") {
			t.Fatalf("swaks --tlsc: %v\n%s", err, out)
		}
		ts.waitLog(`postfix/smtps/smtpd\[\d+\]: Anonymous TLS connection established`, 10*time.Second)
	})

	t.Run("PythonSmtplibEncrypt", func(t *testing.T) {
		script := fmt.Sprintf(`
import smtplib, ssl
s = smtplib.SMTP("127.0.0.1", %d, timeout=20)
s.ehlo("client.example.org")
assert s.has_extn("starttls"), s.esmtp_features
code, msg = s.docmd("MAIL FROM:<a@example.org>")
print("before", code, msg.decode())
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s.starttls(context=ctx)
s.ehlo("client.example.org")
assert not s.has_extn("starttls")
print("cipher", s.sock.version(), s.sock.cipher()[0])
s.sendmail("a@example.org", ["user@mx.moat.test"], "Subject: py\r\n\r\nhello\r\n")
s.quit()
print("sent")
`, ts.sub)
		out, err := runTool(t, 60*time.Second, "", "python3", "-c", script)
		if err != nil || !strings.Contains(out, "before 530 5.7.0 Must issue a STARTTLS command first") || !strings.Contains(out, "sent") {
			t.Fatalf("python smtplib: %v\n%s", err, out)
		}
	})

	t.Run("STARTTLSInjection", func(t *testing.T) {
		d := dial(t, ts.addr())
		d.expect("220 ")
		d.cmd("EHLO client.example.org", "250 ")
		// CVE-2011-0411: RSET rides in the same segment as STARTTLS.
		d.send("STARTTLS\r\nRSET\r\n")
		d.expect("220 2.0.0 Ready to start TLS")
		d.startTLS(&tls.Config{InsecureSkipVerify: true})
		r := d.cmd("EHLO after.example.org", "250 ")
		if !strings.HasPrefix(r[0], "250-mx.moat.test") {
			t.Fatalf("first reply inside TLS %q: the injected RSET ran", r)
		}
		d.cmd("QUIT", "221")
		ts.waitLog(`disconnect from \S+\[127\.0\.0\.1\] ehlo=2 starttls=1 quit=1 commands=4`, 10*time.Second)
	})

	t.Run("ReloadKeepsSessionConfig", func(t *testing.T) {
		// A session opened before the reload finishes with the old
		// generation's certificate; new sessions get the new one.
		old := dial(t, ts.addr())
		old.expect("220 ")
		oldFP := ts.rsa.Cert.Raw
		fresh := tlsconftest.New(t, ts.certDir, "rsa-new", "mx.moat.test", tlsconftest.RSA, nil, false)
		freshEC := tlsconftest.New(t, ts.certDir, "ec-new", "mx.moat.test", tlsconftest.ECDSA, nil, false)
		for _, p := range [][2]string{{fresh.CertFile, ts.rsa.CertFile}, {fresh.KeyFile, ts.rsa.KeyFile},
			{freshEC.CertFile, ts.ec.CertFile}, {freshEC.KeyFile, ts.ec.KeyFile}} {
			if err := os.Rename(p[0], p[1]); err != nil {
				t.Fatal(err)
			}
		}
		ts.cmd.Process.Signal(syscall.SIGHUP)
		ts.waitLog(`: reload -- version`, 20*time.Second)
		rsaOnly := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
		old.cmd("EHLO client.example.org", "250 ")
		old.cmd("STARTTLS", "220 ")
		tc := old.startTLS(rsaOnly)
		if !bytes.Equal(tc.ConnectionState().PeerCertificates[0].Raw, oldFP) {
			t.Fatal("the session from before the reload got the new certificate")
		}
		old.cmd("EHLO client.example.org", "250 ")
		old.cmd("QUIT", "221")
		deadline := time.Now().Add(20 * time.Second)
		for {
			n := dial(t, ts.addr())
			n.expect("220 ")
			n.cmd("EHLO client.example.org", "250 ")
			n.cmd("STARTTLS", "220 ")
			tc := n.startTLS(rsaOnly)
			if bytes.Equal(tc.ConnectionState().PeerCertificates[0].Raw, fresh.Cert.Raw) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("new sessions do not get the new certificate after reload")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("Testssl", func(t *testing.T) {
		if testing.Short() {
			t.Skip("testssl.sh takes minutes")
		}
		testssl(t, ts.addr(), true)
		testssl(t, ts.smtpsAddr(), false)
	})
}

// testssl runs Debian's testssl.sh on protocols, cipher categories and
// forward secrecy, logs its JSON and fails on a protocol or cipher finding
// of severity MEDIUM or worse.
func testssl(t *testing.T, addr string, starttls bool) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "testssl.json")
	args := []string{"--quiet", "--warnings", "off", "--color", "0", "--openssl-timeout", "10",
		"--connect-timeout", "10", "--protocols", "--std", "--fs", "--jsonfile", out}
	if starttls {
		args = append(args, "--starttls", "smtp")
	}
	args = append(args, addr)
	text, err := runTool(t, 8*time.Minute, "", "testssl", args...)
	b, rerr := os.ReadFile(out)
	if rerr != nil {
		t.Fatalf("testssl %s: %v (%v)\n%s", addr, rerr, err, text)
	}
	t.Logf("testssl %s JSON:\n%s", addr, b)
	var findings []struct {
		ID       string `json:"id"`
		Severity string `json:"severity"`
		Finding  string `json:"finding"`
	}
	if err := json.Unmarshal(b, &findings); err != nil {
		t.Fatalf("testssl JSON: %v", err)
	}
	bad := map[string]bool{"MEDIUM": true, "HIGH": true, "CRITICAL": true}
	var seen13, seen12, seenFS bool
	for _, f := range findings {
		if bad[f.Severity] {
			t.Errorf("testssl %s: %s %s: %s", addr, f.Severity, f.ID, f.Finding)
		}
		switch f.ID {
		case "SSLv2", "SSLv3", "TLS1", "TLS1_1":
			if !strings.HasPrefix(f.Finding, "not offered") {
				t.Errorf("testssl %s: %s %s", addr, f.ID, f.Finding)
			}
		case "TLS1_2":
			seen12 = strings.HasPrefix(f.Finding, "offered")
		case "TLS1_3":
			seen13 = strings.HasPrefix(f.Finding, "offered")
		case "cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
			"cipherlist_3DES_IDEA", "cipherlist_AVERAGE", "cipherlist_OBSOLETED":
			if !strings.HasPrefix(f.Finding, "not offered") {
				t.Errorf("testssl %s: weak suites %s: %s", addr, f.ID, f.Finding)
			}
		case "FS", "PFS": // testssl 3.2 and 3.0 names
			seenFS = true
			if !strings.HasPrefix(f.Finding, "offered") {
				t.Errorf("testssl %s: forward secrecy %s", addr, f.Finding)
			}
		}
	}
	if !seen12 || !seen13 || !seenFS {
		t.Errorf("testssl %s: TLS 1.2 offered %v, TLS 1.3 offered %v, forward secrecy checked %v", addr, seen12, seen13, seenFS)
	}
}

// readOneMaildir returns the only message in a Maildir's new/.
func readOneMaildir(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("maildir %s: %v", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "new", ents[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTLSClientCertRelay: a client certificate verified against
// smtpd_tls_CAfile whose fingerprint is in relay_clientcerts may relay
// (permit_tls_clientcerts); without it, or with a certificate that does
// not verify, relaying is refused. swaks presents the certificates.
func TestTLSClientCertRelay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the master drops each smtpd child to mail_owner in a jail")
	}
	certDir := t.TempDir()
	if err := os.Chmod(certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ca := tlsconftest.New(t, certDir, "ca", "Test CA", tlsconftest.ECDSA, nil, true)
	srv := tlsconftest.New(t, certDir, "srv", "mx.moat.test", tlsconftest.RSA, nil, false)
	good := tlsconftest.New(t, certDir, "good", "client.example.org", tlsconftest.ECDSA, ca, false)
	self := tlsconftest.New(t, certDir, "self", "self.example.org", tlsconftest.ECDSA, nil, false)
	table := filepath.Join(certDir, "relay_clientcerts")
	fps := tlsconf.Fingerprint("sha256", good.Cert.Raw) + " good\n" + tlsconf.Fingerprint("sha256", self.Cert.Raw) + " self\n"
	if err := os.WriteFile(table, []byte(fps), 0o644); err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf(`smtpd_tls_security_level = may
smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpd_tls_ask_ccert = yes
smtpd_tls_CAfile = %s
smtpd_tls_loglevel = 1
relay_clientcerts = texthash:%s
smtpd_relay_restrictions = permit_tls_clientcerts, reject_unauth_destination
`, srv.CertFile, srv.KeyFile, ca.CertFile, table)
	s := startWithMaster(t, extra, "127.0.0.1:{{PORT}} inet n - y - - smtpd\n")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"trusted", []string{"--tls-cert", good.CertFile, "--tls-key", good.KeyFile}, "250 2.1.5 Ok"},
		{"untrusted", []string{"--tls-cert", self.CertFile, "--tls-key", self.KeyFile}, "554 5.7.1 <x@remote.example>: Relay access denied"},
		{"none", nil, "554 5.7.1 <x@remote.example>: Relay access denied"},
	} {
		args := append([]string{"--server", s.addr(), "--tls", "--quit-after", "RCPT",
			"--from", "a@example.org", "--to", "x@remote.example", "--helo", "client.example.org"}, tc.args...)
		out, _ := runTool(t, 60*time.Second, "", "swaks", args...)
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s: want %q\n%s", tc.name, tc.want, out)
		}
	}
	s.waitLog(`Trusted TLS connection established from \S+\[127\.0\.0\.1\]`, 10*time.Second)
	s.waitLog(`Untrusted TLS connection established from \S+\[127\.0\.0\.1\]`, 10*time.Second)
}
