package test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSwaks sends one message with swaks, the admin's everyday test
// client, and follows it through the log lines admins, fail2ban and
// pflogsumm read, into the local user's Maildir.
func TestSwaks(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	out, err := runTool(t, 30*time.Second, "", "swaks",
		"--server", s.addr(), "--helo", "client.example.org",
		"--from", "sender@example.org", "--to", "user@mx.moat.test",
		"--header", "Subject: swaks test", "--body", "hello from swaks")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`<-\s+250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("swaks saw no 250 queued as:\n%s", out)
	}
	id := m[1]
	s.waitDelivered("user", 1, 10*time.Second)
	client := `\S+\[127\.0\.0\.1\]`
	for _, re := range []string{
		`postfix/smtpd\[\d+\]: connect from ` + client,
		`postfix/smtpd\[\d+\]: ` + id + `: client=` + client,
		`postfix/\w+\[\d+\]: ` + id + `: message-id=<`,
		`postfix/qmgr\[\d+\]: ` + id + `: from=<sender@example\.org>, size=\d+, nrcpt=1 \(queue active\)`,
		`postfix/local\[\d+\]: ` + id + `: to=<user@mx\.moat\.test>, relay=local, delay=[0-9.]+, delays=[0-9./]+, dsn=2\.0\.0, status=sent \(delivered to maildir\)`,
		`postfix/qmgr\[\d+\]: ` + id + `: removed`,
		`postfix/smtpd\[\d+\]: disconnect from ` + client + ` ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5`,
	} {
		s.waitLog(re, 10*time.Second)
	}
	// pflogsumm parses the same lines Postfix writes.
	sum, err := runTool(t, 30*time.Second, s.log(), "pflogsumm")
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, sum)
	}
	for _, re := range []string{`(?m)^\s+1\s+received$`, `(?m)^\s+1\s+delivered$`} {
		if !regexp.MustCompile(re).MatchString(sum) {
			t.Errorf("pflogsumm output lacks %q:\n%s", re, sum)
		}
	}
}

// TestSmtplib drives moat with Python's smtplib: EHLO keywords, DSN and
// 8BITMIME parameters, two local recipients, VRFY refused.
func TestSmtplib(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	script := fmt.Sprintf(`
import smtplib
s = smtplib.SMTP("127.0.0.1", %d, timeout=10)
code, _ = s.ehlo("client.example.org")
print("ehlo", code, " ".join(sorted(s.esmtp_features)))
refused = s.sendmail("sender@example.org", ["user@mx.moat.test", "other@localhost"],
    b"Subject: smtplib\r\n\r\nhello\r\n",
    mail_options=["BODY=8BITMIME", "RET=HDRS", "ENVID=e1"],
    rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
print("refused", refused)
print("vrfy", s.verify("user")[0])
print("expn", s.expn("user")[0])
print("quit", s.quit()[0])
`, s.port)
	out, err := runTool(t, 30*time.Second, script, "python3", "-")
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`ehlo 250 (.*)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no EHLO line:\n%s", out)
	}
	feats := " " + m[1] + " "
	for _, f := range []string{"pipelining", "size", "8bitmime", "dsn", "smtputf8", "enhancedstatuscodes", "chunking"} {
		if !strings.Contains(feats, " "+f+" ") {
			t.Errorf("EHLO lacks %s: %s", f, m[1])
		}
	}
	if strings.Contains(feats, " vrfy ") {
		t.Errorf("EHLO offers VRFY though disable_vrfy_command = yes: %s", m[1])
	}
	// Postfix has no EXPN: it is an unknown command, which discloses
	// nothing either.
	for _, want := range []string{"refused {}", "vrfy 502", "expn 500", "quit 221"} {
		if !strings.Contains(out, want) {
			t.Errorf("smtplib output lacks %q:\n%s", want, out)
		}
	}
	s.waitDelivered("user", 1, 10*time.Second)
	s.waitDelivered("other", 1, 10*time.Second)
}

// TestSeedDialogue replays seed 001's telnet session against moat's
// defaults: the banner names neither the software nor its version, EHLO
// does not offer VRFY, and VRFY discloses nothing.
func TestSeedDialogue(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	d := dial(t, s.addr())
	if got := d.expect("220"); got[0] != "220 mx.moat.test ESMTP" {
		t.Errorf("banner %q, want %q", got[0], "220 mx.moat.test ESMTP")
	}
	ehlo := d.cmd("EHLO localhost", "250 ")
	for _, l := range ehlo {
		if strings.Contains(l, "VRFY") {
			t.Errorf("EHLO offers VRFY: %q", ehlo)
		}
	}
	if ehlo[0] != "250-mx.moat.test" {
		t.Errorf("EHLO first line %q", ehlo[0])
	}
	if r := d.cmd("VRFY kororo", "502"); r[0] != "502 5.5.1 VRFY command is disabled" {
		t.Errorf("VRFY: %q", r)
	}
	d.cmd("EXPN kororo", "500 5.5.2 Error: command not recognized")
	d.cmd("QUIT", "221")
}

// TestHeloRequired: MAIL before HELO/EHLO is refused (smtpd_helo_required,
// seed 001).
func TestHeloRequired(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	d := dial(t, s.addr())
	d.expect("220")
	d.cmd("MAIL FROM:<a@example.org>", "503 5.5.1")
	d.cmd("QUIT", "221")
}

// TestNoOpenRelay: a client outside mynetworks may send to local domains
// only; the refusal is Postfix's, and so is its log line.
func TestNoOpenRelay(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	d := dial(t, s.addr())
	d.expect("220")
	d.cmd("EHLO client.example.org", "250")
	d.cmd("MAIL FROM:<a@example.org>", "250")
	r := d.cmd("RCPT TO:<victim@example.net>", "4")
	if !strings.Contains(r[0], "Relay access denied") {
		t.Errorf("relay attempt: %q", r)
	}
	d.cmd("RCPT TO:<user@mx.moat.test>", "250")
	d.cmd("QUIT", "221")
	s.waitLog(`NOQUEUE: reject: RCPT from \S+\[127\.0\.0\.1\]: 454 4\.7\.1 <victim@example\.net>: Relay access denied; from=<a@example\.org> to=<victim@example\.net> proto=ESMTP helo=<client\.example\.org>`, 10*time.Second)
}

// TestSmtpSource loads moat with Postfix's own load generator: 200
// messages over 10 concurrent sessions, all delivered.
func TestSmtpSource(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	out, err := runTool(t, 60*time.Second, "", "smtp-source",
		"-s", "10", "-m", "200", "-l", "1024", "-f", "load@example.org",
		"-t", "user@mx.moat.test", s.addr())
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	s.waitDelivered("user", 200, 60*time.Second)
	s.waitLogCount(`: removed$`, 200, 10*time.Second)
}
