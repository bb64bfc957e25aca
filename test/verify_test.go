package test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSendmailVerify: sendmail -bv (sendmail(1): "Do not collect or
// deliver a message. Instead, send an email report after verifying each
// recipient address") run by an ordinary user through the set-group-ID
// postdrop: it returns at once without reading standard input, local(8)
// judges each recipient, the user receives one "Mail Delivery Status
// Report" from MAILER-DAEMON with both verdicts, the log says
// deliverable/undeliverable as Postfix's does, and the existing
// recipient receives nothing.
func TestSendmailVerify(t *testing.T) {
	e := newSubmitEnv(t, true)
	sender := &e.rcpt[3]
	exists := e.rcpt[0].name
	nosuch := noSuchUser()
	stdout, stderr, code := e.run(sender, "Subject: ignored\n\nnot read\n", e.sendmail, "-bv", exists, nosuch+"@mx.moat.test")
	if code != 0 || stdout != "" || stderr != "" {
		t.Fatalf("sendmail -bv exited %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	report := e.message(sender.name, "Mail Delivery Status Report")
	for _, want := range []string{
		"Return-Path: <>\n",
		"From: MAILER-DAEMON@mx.moat.test (Mail Delivery System)\n",
		"To: <" + sender.name + "@mx.moat.test>\n",
		"Enclosed is the mail delivery report that you requested.\n",
		"\n<" + exists + "@mx.moat.test>: delivery via local: delivers to maildir\n",
		"\n<" + nosuch + "@mx.moat.test>: delivery via local: unknown user: \"" + nosuch + "\"\n",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	line := e.waitLog(`postfix/local\[\d+\]: ([0-9A-Za-z]+): to=<`+exists+`@mx\.moat\.test>, relay=local, .*dsn=2\.0\.0, status=deliverable \(delivers to maildir\)`, 5*time.Second)
	id := regexp.MustCompile(`: ([0-9A-Za-z]+): to=`).FindStringSubmatch(line)[1]
	e.waitLog(`postfix/local\[\d+\]: `+id+`: to=<`+nosuch+`@mx\.moat\.test>, relay=local, .*dsn=5\.1\.1, status=undeliverable \(unknown user: "`+nosuch+`"\)`, 5*time.Second)
	e.waitLog(`postfix/bounce\[\d+\]: `+id+`: sender delivery status notification: [0-9A-Za-z]+`, 5*time.Second)
	e.waitLog(`postfix/qmgr\[\d+\]: `+id+`: removed`, 5*time.Second)
	if n := e.delivered(exists); n != 0 {
		t.Errorf("%s received %d messages from sendmail -bv", exists, n)
	}
	if regexp.MustCompile(id + `: to=<.*status=(sent|bounced)`).MatchString(e.log()) {
		t.Errorf("the request was delivered:\n%s", e.log())
	}

	t.Run("t flag refused", func(t *testing.T) {
		_, stderr, code := e.run(sender, "To: "+exists+"\n\n", e.sendmail, "-bv", "-t")
		if code != 64 || !strings.Contains(stderr, "sendmail: fatal: ") || !strings.Contains(stderr, "-t option cannot be used with -bv") {
			t.Errorf("sendmail -bv -t exited %d: %q", code, stderr)
		}
	})
}

// TestSendmailVerifyAlias: an alias is reported as local(8) reports it
// for a probe ("aliased to ..."), nothing is forwarded, and a request from
// a stopped system waits in maildrop/ like any submission.
func TestSendmailVerifyAlias(t *testing.T) {
	e := newSubmitEnv(t, false)
	sender := &e.rcpt[3]
	cf := filepath.Join(e.dir, "main.cf")
	f, err := os.OpenFile(cf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	team := e.rcpt[0].name + ", " + e.rcpt[1].name + ", someone@remote.example"
	if _, err := f.WriteString("alias_maps = inline:{ {team = " + team + "} }\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, stderr, code := e.run(sender, "", e.sendmail, "-bv", "team"); code != 0 {
		t.Fatalf("sendmail -bv exited %d: %s", code, stderr)
	}
	e.start()
	t.Cleanup(e.stop)
	report := e.message(sender.name, "Mail Delivery Status Report")
	if want := "\n<team@mx.moat.test>: delivery via local: aliased to " + team + "\n"; !strings.Contains(report, want) {
		t.Errorf("report lacks %q:\n%s", want, report)
	}
	e.waitLog(`postfix/local\[\d+\]: [0-9A-Za-z]+: to=<team@mx\.moat\.test>, relay=local, .*status=deliverable \(aliased to `+regexp.QuoteMeta(team)+`\)`, 5*time.Second)
	e.waitLog(`postfix/qmgr\[\d+\]: [0-9A-Za-z]+: removed`, 5*time.Second)
	for _, r := range e.rcpt[:2] {
		if n := e.delivered(r.name); n != 0 {
			t.Errorf("%s received %d messages from sendmail -bv", r.name, n)
		}
	}
	if strings.Contains(e.log(), "to=<someone@remote.example>") {
		t.Errorf("the alias was expanded into mail:\n%s", e.log())
	}
}

// noSuchUser is a local part no account has: "nosuch" and 8 random hex
// digits.
func noSuchUser() string {
	var b [4]byte
	rand.Read(b[:])
	return "nosuch" + hex.EncodeToString(b[:])
}
