package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// headerCanon maps joe's qualified address; header rewriting must find
// it from a bare "joe" (append_at_myorigin, then canonical_maps).
const headerCanon = "canonical_maps = inline:{ {joe@mx.moat.test=Joe.Public@moat.test} }\n"

// deliveredWith waits (bounded) for the message with the given subject in
// a Maildir and returns it with LF line endings.
func deliveredWith(t *testing.T, s *server, user, subject string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(s.maildir(user), "new", "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err == nil && strings.Contains(string(b), "\nSubject: "+subject+"\n") {
				return string(b)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message %q for %s\nlog:\n%s", subject, user, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// smtpFrom sends one message to user over SMTP from source address src
// with Python's smtplib; its To: header names user unqualified.
func smtpFrom(t *testing.T, s *server, src, user, subject string) {
	t.Helper()
	script := fmt.Sprintf(`
import smtplib
s = smtplib.SMTP("127.0.0.1", %d, timeout=20, source_address=(%q, 0), local_hostname="client.example")
s.sendmail("joe@example.org", ["%s@mx.moat.test"],
    b"From: Joe <joe>\r\nTo: %s, other@elsewhere.example (Other)\r\nSubject: %s\r\n\r\nFrom: joe\r\n")
s.quit()
`, s.port, src, user, user, subject)
	if out, err := runTool(t, 60*time.Second, script, "python3", "-"); err != nil {
		t.Fatalf("smtplib from %s: %v\n%s", src, err, out)
	}
}

// A local submission's headers are rewritten: sendmail's "From: joe" is
// qualified with $myorigin and mapped by canonical_maps (cleanup(8) always
// rewrites headers of mail from pickup).
func TestHeaderRewriteSendmail(t *testing.T) {
	e := newSubmitEnv(t, false)
	f, err := os.OpenFile(filepath.Join(e.dir, "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(headerCanon); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e.start()
	t.Cleanup(e.stop)
	// local(8) defers mail for an account without a home directory.
	r0 := homedAccount(t).name
	msg := "From: joe\nTo: " + r0 + "\nSubject: canon\n\nFrom: joe stays in the body\n"
	if _, stderr, code := e.run(&e.account, msg, e.sendmail, "-i", r0); code != 0 {
		t.Fatalf("sendmail exited %d: %s", code, stderr)
	}
	m := deliveredWith(t, e.server, r0, "canon")
	for _, want := range []string{"\nFrom: Joe.Public@moat.test\n", "\nTo: " + r0 + "@mx.moat.test\n", "\nFrom: joe stays in the body\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("delivered message lacks %q:\n%s", want, m)
		}
	}
}

// Over SMTP, local_header_rewrite_clients decides. By default
// (permit_inet_interfaces) a client on one of inet_interfaces, 127.0.0.1
// here, is local and its headers are rewritten; a client elsewhere
// (127.0.0.2 stands for another host) is remote, and its headers stay as
// sent (remote_header_rewrite_domain is empty). With
// local_header_rewrite_clients = static:all every client is local.
func TestHeaderRewriteSMTP(t *testing.T) {
	needDeliveryRoot(t)
	// local(8) defers mail for an account without a home directory.
	u := homedAccount(t).name
	rewritten := "\nFrom: Joe <Joe.Public@moat.test>\nTo: " + u + "@mx.moat.test, other@elsewhere.example (Other)\n"
	asSent := "\nFrom: Joe <joe>\nTo: " + u + ", other@elsewhere.example (Other)\n"
	s := startServer(t, headerCanon)
	smtpFrom(t, s, "127.0.0.2", u, "remote")
	smtpFrom(t, s, "127.0.0.1", u, "inet interface")
	if m := deliveredWith(t, s, u, "remote"); !strings.Contains(m, asSent) {
		t.Errorf("remote client's headers changed:\n%s", m)
	}
	if m := deliveredWith(t, s, u, "inet interface"); !strings.Contains(m, rewritten) || !strings.HasSuffix(m, "\n\nFrom: joe\n") {
		t.Errorf("local client's headers not rewritten:\n%s", m)
	}

	all := startServer(t, headerCanon+"local_header_rewrite_clients = static:all\n")
	smtpFrom(t, all, "127.0.0.2", u, "static all")
	if m := deliveredWith(t, all, u, "static all"); !strings.Contains(m, rewritten) {
		t.Errorf("static:all client's headers not rewritten:\n%s", m)
	}

	dom := startServer(t, headerCanon+"local_header_rewrite_clients =\nremote_header_rewrite_domain = domain.invalid\n")
	smtpFrom(t, dom, "127.0.0.2", u, "remote domain")
	if m := deliveredWith(t, dom, u, "remote domain"); !strings.Contains(m, "\nFrom: Joe <joe@domain.invalid>\nTo: "+u+"@domain.invalid, other@elsewhere.example (Other)\n") {
		t.Errorf("remote_header_rewrite_domain not applied:\n%s", m)
	}
}
