package smtpd

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"moat/internal/queue"
	"moat/internal/testutil"
)

// The published SMTP smuggling end-of-data variants (December 2023), each
// followed by a hidden second transaction.
var smuggleVariants = map[string]string{
	"LF.LF":     "\n.\n",
	"LF.CRLF":   "\n.\r\n",
	"CR.CR":     "\r.\r",
	"CRLF.CR":   "\r\n.\r",
	"CRLF.LF":   "\r\n.\n",
	"LF.CR":     "\n.\r",
	"CR.CRLF":   "\r.\r\n",
	"CRLF.CRCR": "\r\n.\r\r\n",
}

const hidden = "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nFrom: ceo@example.com\r\n\r\nsmuggled\r\n"

// TestSmuggling sends every variant under each smtpd_forbid_bare_newline
// policy: at most one message is stored, and the hidden MAIL never runs.
func TestSmuggling(t *testing.T) {
	for _, mode := range []string{"normalize", "no", "reject"} {
		for name, v := range smuggleVariants {
			t.Run(mode+"/"+name, func(t *testing.T) {
				h := newHarness(t, map[string]string{"smtpd_forbid_bare_newline": mode,
					"smtpd_forbid_bare_newline_exclusions": ""}, nil, "")
				c := h.greeted()
				c.cmd("EHLO x", "250-")
				c.cmd("MAIL FROM:<a@example.org>", "250")
				c.cmd("RCPT TO:<b@example.com>", "250")
				c.cmd("DATA", "354")
				c.write("Subject: s\r\n\r\nbody" + v + hidden + "\r\n.\r\n")
				got := c.reply()
				if mode == "reject" {
					if !strings.HasPrefix(got, "550 5.5.2 Error: bare <") {
						t.Fatalf("reply %q, want 550 bare newline refusal", got)
					}
					c.closed()
					h.waitLog("reject: END-OF-MESSAGE from " + h.client + ": 550 5.5.2 Error: bare <")
					if n := len(h.messages(queue.Incoming)); n != 0 {
						t.Fatalf("%d messages stored", n)
					}
					return
				}
				if !strings.HasPrefix(got, "250 2.0.0 Ok: queued as ") {
					t.Fatalf("reply %q", got)
				}
				c.cmd("QUIT", "221")
				ids := h.messages(queue.Incoming)
				if len(ids) != 1 {
					t.Fatalf("%d messages stored, want 1", len(ids))
				}
				m, err := h.q.Open(queue.Incoming, ids[0])
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				b, _ := io.ReadAll(m.Content())
				if !strings.Contains(string(b), "evil@attacker.example") {
					t.Errorf("hidden command is not message content:\n%q", b)
				}
				if m.Envelope.Sender != "a@example.org" {
					t.Errorf("sender %q", m.Envelope.Sender)
				}
				h.waitLog("disconnect from " + h.client + " ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
			})
		}
	}
}

// TestBareNewlineCommand: under reject a bare LF in a command disconnects.
func TestBareNewlineCommand(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_forbid_bare_newline": "reject",
		"smtpd_forbid_bare_newline_exclusions": "", "smtpd_forbid_bare_newline_reject_code": "554"}, nil, "")
	c := h.greeted()
	c.write("EHLO x\n")
	c.expect("554 5.5.2 Error: bare <LF> received")
	c.closed()
	h.waitLog("NOQUEUE: reject: CONNECT from " + h.client + ": 554 5.5.2 Error: bare <LF> received")

	// The default exclusions ($mynetworks) cover this client.
	h = newHarness(t, map[string]string{"smtpd_forbid_bare_newline": "reject"}, nil, "")
	c = h.greeted()
	c.write("EHLO x\n")
	c.expect("250-mx.example.com")
}

func TestBDAT(t *testing.T) {
	h := newHarness(t, map[string]string{"message_size_limit": "100"}, nil, "")
	c := h.greeted()
	c.cmd("EHLO x", "250-")
	// The chunk ("MAI") is read and dropped, so what follows is a command.
	c.write("BDAT 3\r\nMAIL FROM:<a@example.org>\r\n")
	c.expect("503 5.5.1 Error: need RCPT command")
	c.expect("500 5.5.2 Error: command not recognized")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.write("BDAT 12\r\nSubject: x\r\n")
	c.expect("250 2.0.0 Ok: 12 bytes")
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: MAIL after BDAT")
	c.cmd("DATA", "503 5.5.1 Error: DATA after BDAT")
	c.write("BDAT 7 LAST\r\n\r\nbody\n")
	got := c.expect("250 2.0.0 Ok: 19 bytes queued as ")
	id := got[strings.LastIndex(got, " ")+1:]
	m, err := h.q.Open(queue.Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(m.Content())
	m.Close()
	if !strings.HasSuffix(string(b), "Subject: x\r\n\r\nbody\r\n") {
		t.Errorf("content %q", b)
	}
	// Over message_size_limit: every chunk is still read, then 552.
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.write("BDAT 80\r\n" + strings.Repeat("y", 80))
	c.expect("250 2.0.0 Ok: 80 bytes")
	c.write("BDAT 80 LAST\r\n" + strings.Repeat("y", 80))
	c.expect("552 5.3.4")
	c.cmd("BDAT x", "521 5.5.4 Syntax: BDAT count [LAST]")
	c.closed()
	if n := len(h.messages(queue.Incoming)); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

// TestQueueFull runs the queue on a tiny tmpfs, the honest way to get
// ENOSPC: the message is refused with 451 and nothing is left behind.
func TestQueueFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=64k,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v)", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, 0) })
	qdir := filepath.Join(dir, "q")
	// queue_minfree would refuse MAIL first; turn it off to reach the write.
	h := newHarness(t, map[string]string{"message_size_limit": "0"}, nil, qdir)
	c := h.greeted()
	c.cmd("EHLO x", "250-")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.cmd("DATA", "354")
	c.write("Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("z", 98)+"\r\n", 2000) + ".\r\n")
	c.expect("451 4.3.0 Error: queue file write error")
	c.cmd("QUIT", "221")
	h.waitLog("warning: ")
	for _, q := range queue.Names() {
		if n := len(h.messages(q)); n != 0 {
			t.Errorf("%s has %d messages", q, n)
		}
	}
	// queue_minfree: MAIL is refused while free space is short.
	h2 := newHarness(t, map[string]string{"message_size_limit": "1000000"}, nil, filepath.Join(dir, "q2"))
	c = h2.greeted()
	c.cmd("EHLO x", "250-")
	c.cmd("MAIL FROM:<a@example.org>", "452 4.3.1 Insufficient system storage")
}

// TestPythonSmtplib and TestSwaks use real clients.
func TestPythonSmtplib(t *testing.T) {
	py := testutil.Tool(t, "python3")
	h := newHarness(t, nil, nil, "")
	host, port, _ := strings.Cut(h.addr, ":")
	script := `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
s.ehlo("py.example.org")
assert s.has_extn("pipelining") and s.has_extn("smtputf8") and s.has_extn("chunking")
refused = s.sendmail("a@example.org", ["b@example.com", "c@example.com"],
    b"Subject: py\r\nMessage-ID: <py@x>\r\n\r\nline\r\n.dot\r\n", mail_options=["BODY=8BITMIME"], rcpt_options=["NOTIFY=NEVER"])
assert refused == {}, refused
code, msg = s.verify("root")
assert code == 502, (code, msg)
s.quit()
`
	out, err := exec.Command(py, "-c", script, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	ids := h.messages(queue.Incoming)
	if len(ids) != 1 {
		t.Fatalf("%d messages", len(ids))
	}
	m, err := h.q.Open(queue.Incoming, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, _ := io.ReadAll(m.Content())
	if !strings.HasSuffix(string(b), "\r\nline\r\n.dot\r\n") || len(m.Envelope.Recipients) != 2 {
		t.Errorf("content %q envelope %+v", b, m.Envelope)
	}
	h.waitLog(ids[0] + ": message-id=<py@x>")
}

func TestSwaks(t *testing.T) {
	swaks := testutil.Tool(t, "swaks")
	h := newHarness(t, nil, nil, "")
	host, port, _ := strings.Cut(h.addr, ":")
	for _, extra := range [][]string{nil, {"--pipeline"}} {
		args := append([]string{"--server", host, "--port", port, "--from", "a@example.org", "--to", "b@example.com",
			"--helo", "swaks.example.org", "--timeout", "10"}, extra...)
		out, err := exec.Command(swaks, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "<-  250 2.0.0 Ok: queued as ") {
			t.Fatalf("swaks %v: %v\n%s", extra, err, out)
		}
	}
	if n := len(h.messages(queue.Incoming)); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// TestSmtpSource runs Postfix's load generator: pipelined MAIL/RCPT/DATA
// from several parallel sessions, several messages per connection.
func TestSmtpSource(t *testing.T) {
	src := testutil.Tool(t, "smtp-source")
	h := newHarness(t, nil, nil, "")
	out, err := exec.Command(src, "-s", "4", "-m", "40", "-d", "-r", "2", "-l", "2000",
		"-f", "a@example.org", "-t", "b@example.com", "-M", "source.example.org", h.addr).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	if n := len(h.messages(queue.Incoming)); n != 40 {
		t.Errorf("%d messages, want 40", n)
	}
	for _, l := range h.logs() {
		if strings.Contains(l, "improper") || strings.Contains(l, "warning") {
			t.Errorf("log: %s", l)
		}
	}
}

// content_filter goes into the queue file for the queue manager
// (postconf(5)); a FILTER action from header_checks overrides it
// (header_checks(5) FILTER).
func TestContentFilterQueued(t *testing.T) {
	hc := filepath.Join(t.TempDir(), "header_checks")
	if err := os.WriteFile(hc, []byte("/^Subject: scan elsewhere/ FILTER scanner:[127.0.0.1]:10026\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, map[string]string{"content_filter": "smtp-amavis:[127.0.0.1]:10024",
		"header_checks": "regexp:" + hc}, nil, "")
	send := func(subject string) string {
		c := h.greeted()
		c.cmd("EHLO x", "250-")
		c.cmd("MAIL FROM:<a@example.org>", "250")
		c.cmd("RCPT TO:<b@example.com>", "250")
		c.cmd("DATA", "354")
		got := c.cmd("Subject: "+subject+"\r\n\r\nbody\r\n.", "250 2.0.0 Ok: queued as ")
		c.cmd("QUIT", "221")
		id := got[strings.LastIndex(got, " ")+1:]
		m, err := h.q.Open(queue.Incoming, id)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		return m.Envelope.Filter
	}
	if f := send("hello"); f != "smtp-amavis:[127.0.0.1]:10024" {
		t.Errorf("content_filter: Filter = %q", f)
	}
	if f := send("scan elsewhere"); f != "scanner:[127.0.0.1]:10026" {
		t.Errorf("FILTER action: Filter = %q", f)
	}
}
