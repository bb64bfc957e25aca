package maillog

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/testutil"
)

// A session written by moat's Logger to a maillog_file is summarised by
// pflogsumm (Debian package pflogsumm) as it would summarise Postfix's: one
// message received with its size and sender, one RCPT reject with its
// reason and client, one header_checks reject, two smtpd connections, and
// the SASL warning.
func TestPflogsumm(t *testing.T) {
	bin := testutil.Tool(t, "pflogsumm")
	dir := t.TempDir()
	path := filepath.Join(dir, "maillog")
	fs, err := OpenFile(path, "mx")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 7, 3, 11, 0, 40, 0, time.Local)
	root := New(Options{Sink: fs, Daemon: "master", PID: 1, Now: func() time.Time { return now }})
	smtpd, cleanup, qmgr := root.With("smtpd", 812), root.With("cleanup", 813), root.With("qmgr", 700)

	good := Client{Name: "mail.example.org", Addr: netip.MustParseAddr("192.0.2.25")}
	bad := Client{Addr: netip.MustParseAddr("192.0.2.1")}
	const id = "4Nx3Fz1QZKz9vD5"
	var s1, s2 Commands

	smtpd.Info("%s", Connect(good))
	smtpd.Info("%s", ClientLine(id, good, ClientInfo{}))
	cleanup.Info("%s", MessageID(id, "<1@example.org>"))
	qmgr.Info("%s", QueueActive(id, "alice@example.org", 2047, 1))
	for _, v := range []string{"EHLO", "MAIL", "RCPT", "DATA", "QUIT"} {
		s1.Count(v, true)
	}
	now = now.Add(time.Second)
	smtpd.Info("%s", Disconnect(good, &s1))
	qmgr.Info("%s", Removed(id))

	now = now.Add(time.Second)
	smtpd.Info("%s", Connect(bad))
	smtpd.Info("%s", Reject("", "RCPT", bad, "554 5.7.1 <u@example.com>: Relay access denied",
		Envelope{Sender: "a@example.org", HasSender: true, Recipient: "u@example.com", HasRecipient: true, Proto: "ESMTP", Helo: "x"}))
	smtpd.Info("%s", After(LostConnection, "RCPT", bad))
	s2.Count("EHLO", true)
	s2.Count("MAIL", true)
	s2.Count("RCPT", false)
	smtpd.Info("%s", Disconnect(bad, &s2))
	cleanup.Info("%s", ContentAction("4Nx3Fz1QZKz9vD6", "reject", "header", "Subject: win big", "x[192.0.2.9]",
		Envelope{Sender: "spam@example.net", HasSender: true, Recipient: "u@example.com", HasRecipient: true, Proto: "ESMTP", Helo: "x"},
		"5.7.1 no spam"))
	smtpd.Warning("%s", SASLAuthFailed(Client{Addr: netip.MustParseAddr("192.0.2.66")}, "LOGIN", "UGFzc3dvcmQ6"))
	if err := root.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(bin, "--smtpd-stats", path).CombinedOutput()
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	report := string(out)
	for _, want := range []string{
		"      1   received\n",
		"      2   rejected (100%)\n",
		"  cleanup\n    header (total: 1)\n",
		"   2047   bytes received\n",
		"      1   senders\n",
		"       2   connections\n",
		"    Relay access denied (total: 1)\n           1   192.0.2.1\n",
		"      1   alice@example.org\n",
		"      1     2047   example.org\n",
		"unknown[192.0.2.66]: SASL LOGIN authentication failed",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("pflogsumm report lacks %q", want)
		}
	}
	if t.Failed() {
		log, _ := os.ReadFile(path)
		t.Logf("log:\n%s\nreport:\n%s", log, report)
	}
}
