package smtpd

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"moat/internal/queue"
	"moat/internal/smtp"
)

const body = "From: a@example.org\r\nTo: b@example.com\r\nSubject: test\r\nMessage-ID: <1234@example.org>\r\n\r\nHello.\r\n"

// TestTransaction is one full ESMTP transaction with DSN parameters, read
// back from the queue, and the session's log records.
func TestTransaction(t *testing.T) {
	h := newHarness(t, nil, nil, "")
	c := h.greeted()
	c.cmd("EHLO client.example.org", "250-mx.example.com")
	c.cmd("MAIL FROM:<a@example.org> RET=HDRS ENVID=abc+2Bdef SIZE=100 BODY=8BITMIME", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B@example.com", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<c@example.com>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.write(body + ".\r\n")
	got := c.expect("250 2.0.0 Ok: queued as ")
	id := strings.TrimPrefix(got, "250 2.0.0 Ok: queued as ")
	c.cmd("QUIT", "221 2.0.0 Bye")
	c.closed()

	if ids := h.messages(queue.Incoming); len(ids) != 1 || ids[0] != id {
		t.Fatalf("incoming = %v, want [%s]", ids, id)
	}
	m, err := h.q.Open(queue.Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e := m.Envelope
	if e.Sender != "a@example.org" || e.Ret != "HDRS" || e.EnvID != "abc+def" || e.Helo != "client.example.org" ||
		e.Protocol != "ESMTP" || e.ClientAddr != "127.0.0.1" || e.MessageID != "<1234@example.org>" ||
		e.Flags&queue.Flag8BitMIME == 0 {
		t.Errorf("envelope %+v", e)
	}
	if len(e.Recipients) != 2 || e.Recipients[0].Address != "b@example.com" ||
		e.Recipients[0].Notify != smtp.NotifySuccess|smtp.NotifyFailure ||
		e.Recipients[0].ORCPT != "rfc822;B@example.com" || e.Recipients[1].Address != "c@example.com" {
		t.Errorf("recipients %+v", e.Recipients)
	}
	content, err := io.ReadAll(m.Content())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(content), "Received: from client.example.org (") ||
		!strings.Contains(string(content), "by mx.example.com (moat) with ESMTP id "+id) ||
		!strings.HasSuffix(string(content), body) {
		t.Errorf("content:\n%s", content)
	}
	logs := h.waitLog("disconnect from")
	want := []string{
		"connect from " + h.client,
		id + ": client=" + h.client,
		id + ": message-id=<1234@example.org>",
		"disconnect from " + h.client + " ehlo=1 mail=1 rcpt=2 data=1 quit=1 commands=6",
	}
	if strings.Join(logs, "\n") != strings.Join(want, "\n") {
		t.Errorf("logs:\n%s\nwant:\n%s", strings.Join(logs, "\n"), strings.Join(want, "\n"))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.committed) != 1 || h.committed[0] != id {
		t.Errorf("Committed calls %v", h.committed)
	}
}

func TestEHLOKeywords(t *testing.T) {
	h := newHarness(t, nil, nil, "")
	c := h.greeted()
	got := c.cmd("EHLO x", "250")
	want := "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n" +
		"250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING"
	if got != want {
		t.Errorf("EHLO reply\n%s\nwant\n%s", got, want)
	}
	c.cmd("HELO x", "250 mx.example.com")

	h2 := newHarness(t, map[string]string{"disable_vrfy_command": "no",
		"smtpd_discard_ehlo_keywords": "chunking, dsn", "message_size_limit": "0"}, nil, "")
	c = h2.greeted()
	got = c.cmd("EHLO x", "250")
	want = "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE\r\n250-VRFY\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n" +
		"250-8BITMIME\r\n250 SMTPUTF8"
	if got != want {
		t.Errorf("EHLO reply\n%s\nwant\n%s", got, want)
	}
	// DSN not offered: its parameters are refused; BDAT is not implemented.
	c.cmd("MAIL FROM:<a@example.org> RET=FULL", "555 5.5.4 Unsupported option: RET=FULL")
	c.cmd("VRFY <x@example.com>", "252 2.0.0 <x@example.com>")
	c.cmd("BDAT 1 LAST", "521 5.5.1 Error: command not implemented")
	c.closed()
}

func TestVRFYEXPNHELP(t *testing.T) {
	h := newHarness(t, nil, nil, "")
	c := h.greeted()
	c.cmd("VRFY root", "502 5.5.1 VRFY command is disabled")
	c.cmd("EXPN staff", "500 5.5.2 Error: command not recognized")
	c.cmd("HELP", "500 5.5.2 Error: command not recognized")
	c.cmd("ETRN example.com", "503 Error: send HELO/EHLO first")
	c.cmd("EHLO x", "250-")
	c.cmd("ETRN example.com", "459 <example.com>: service unavailable")
	c.cmd("ETRN", "500 Syntax: ETRN domain")
	c.cmd("QUIT", "221")
	h.waitLog("disconnect from " + h.client + " ehlo=1 vrfy=0/1 etrn=0/3 quit=1 unknown=0/2 commands=2/8")
}

func TestStateErrors(t *testing.T) {
	h := newHarness(t, nil, nil, "")
	c := h.greeted()
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: send HELO/EHLO first")
	c.cmd("HELO", "501 Syntax: HELO hostname")
	c.cmd("HELO x", "250 mx.example.com")
	c.cmd("RCPT TO:<b@example.com>", "503 5.5.1 Error: need MAIL command")
	c.cmd("DATA", "503 5.5.1 Error: need RCPT command")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: nested MAIL command")
	c.cmd("DATA", "554 5.5.1 Error: no valid recipients")
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("NOOP", "250 2.0.0 Ok")
	// HELO offered no extensions: DSN parameters are refused.
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("MAIL FROM:<a@example.org> RET=FULL", "555 5.5.4 Unsupported option: RET=FULL")
	c.cmd("", "500 5.5.2 Error: bad syntax")
	c.cmd("GET / HTTP/1.0", "221 2.7.0 Error: I can break rules, too. Goodbye.")
	c.closed()
	h.waitLog("warning: non-SMTP command from " + h.client + ": GET / HTTP/1.0")
}

func TestHeloNotRequired(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_helo_required": "no"}, nil, "")
	c := h.greeted()
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("rset\t", "250 2.0.0 Ok")
	c.cmd("mail\tfrom:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("EHLO\t a\tb ", "250-")
	c.cmd("QUIT", "221")
	h.waitLog("disconnect from " + h.client + " ehlo=1 mail=2 rset=1 quit=1 commands=5")
}

func TestPipelinedBatch(t *testing.T) {
	h := newHarness(t, nil, nil, "")
	c := h.greeted()
	c.cmd("EHLO x", "250-")
	c.write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<bad\r\nRCPT TO:<c@example.com>\r\nDATA\r\n")
	c.expect("250 2.1.0 Ok")
	c.expect("250 2.1.5 Ok")
	c.expect("501 5.1.3 Bad recipient address syntax")
	c.expect("250 2.1.5 Ok")
	c.expect("354 ")
	c.write(body + ".\r\nRSET\r\nMAIL FROM:<>\r\nRCPT TO:<d@example.com>\r\nBDAT 5 LAST\r\nhello")
	c.expect("250 2.0.0 Ok: queued as ")
	c.expect("250 2.0.0 Ok")
	c.expect("250 2.1.0 Ok")
	c.expect("250 2.1.5 Ok")
	c.expect("250 2.0.0 Ok: 5 bytes queued as ")
	c.cmd("QUIT", "221")
	if n := len(h.messages(queue.Incoming)); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

func TestUnauthPipelining(t *testing.T) {
	h := newHarness(t, nil, nil, "")
	c := h.greeted()
	c.write("HELO x\r\nMAIL FROM:<a@example.org>\r\n")
	c.expect("554 5.5.0 Error: SMTP protocol synchronization")
	c.closed()
	h.waitLog(`improper command pipelining after HELO from ` + h.client + `: MAIL FROM:<a@example.org>\r\n`)

	// With PIPELINING, DATA must still be the last command of a group.
	c = h.greeted()
	c.cmd("EHLO x", "250-")
	c.write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: x\r\n")
	c.expect("250 2.1.0")
	c.expect("250 2.1.5")
	c.expect("554 5.5.0 Error: SMTP protocol synchronization")
	c.closed()
	h.waitLog("improper command pipelining after DATA from " + h.client + `: Subject: x\r\n`)
	if n := len(h.messages(queue.Incoming)); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

// TestTalkBeforeGreeting holds the greeting back with a slow connect-stage
// policy, so the client's early command is certainly waiting.
func TestTalkBeforeGreeting(t *testing.T) {
	slow := PolicyFunc(func(ctx context.Context, st Stage, v *View) (*Decision, error) {
		if st == StageConnect {
			time.Sleep(200 * time.Millisecond)
		}
		return nil, nil
	})
	h := newHarness(t, map[string]string{"smtpd_delay_reject": "no"}, slow, "")
	c := h.dial()
	c.write("EHLO eager\r\n")
	c.expect("554 5.5.0 Error: SMTP protocol synchronization")
	c.closed()
	h.waitLog(`improper command pipelining after CONNECT from ` + h.client + `: EHLO eager\r\n`)
	h.waitLog("disconnect from " + h.client + " commands=0/0")
}

func TestSizeLimits(t *testing.T) {
	h := newHarness(t, map[string]string{"message_size_limit": "2000"}, nil, "")
	c := h.greeted()
	c.cmd("EHLO x", "250-")
	c.cmd("MAIL FROM:<a@example.org> SIZE=2001", "552 5.3.4 Message size exceeds fixed limit")
	c.cmd("MAIL FROM:<a@example.org> SIZE=100", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.cmd("DATA", "354")
	c.write("Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 100) + ".\r\n")
	c.expect("552 5.3.4 Message size exceeds fixed limit")
	c.cmd("NOOP", "250 2.0.0 Ok")
	c.cmd("QUIT", "221")
	if n := len(h.messages(queue.Incoming)); n != 0 {
		t.Errorf("%d messages stored", n)
	}
	// Postfix logs no reject record for an over-size message: it is not a
	// policy decision, and fail2ban must not ban a sender for it.
	h.waitLog("disconnect from " + h.client + " ehlo=1 mail=1/2 rcpt=1 data=0/1 noop=1 quit=1 commands=5/7")
}

func TestRecipientLimit(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_recipient_limit": "2"}, nil, "")
	c := h.greeted()
	c.cmd("EHLO x", "250-")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.cmd("RCPT TO:<c@example.com>", "250")
	c.cmd("RCPT TO:<d@example.com>", "452 4.5.3 Error: too many recipients")
	c.cmd("DATA", "354")
	c.write(body + ".\r\n")
	c.expect("250 2.0.0 Ok: queued as")
}

func TestErrorLimits(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_hard_error_limit": "3", "smtpd_soft_error_limit": "2",
		"smtpd_error_sleep_time": "1"}, nil, "")
	c := h.greeted()
	c.cmd("FOO", "500 5.5.2")
	start := time.Now()
	c.cmd("BAR", "500 5.5.2")
	if time.Since(start) < 100*time.Millisecond {
		t.Errorf("no error sleep at the soft limit")
	}
	c.cmd("BAZ", "500 5.5.2")
	c.expect("421 4.7.0 mx.example.com Error: too many errors")
	c.closed()
	h.waitLog("too many errors after UNKNOWN from " + h.client)
	h.waitLog("disconnect from " + h.client + " unknown=0/3 commands=0/3")

	// Junk commands count as errors past smtpd_junk_command_limit.
	h = newHarness(t, map[string]string{"smtpd_hard_error_limit": "2", "smtpd_junk_command_limit": "2",
		"smtpd_error_sleep_time": "0"}, nil, "")
	c = h.greeted()
	for i := 0; i < 5; i++ {
		c.cmd("NOOP", "250 2.0.0 Ok")
	}
	c.expect("421 4.7.0 mx.example.com Error: too many errors")
	h.waitLog("too many errors after NOOP from " + h.client)
}

func TestTimeout(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_timeout": "1s"}, nil, "")
	c := h.greeted()
	c.cmd("EHLO x", "250-")
	c.expect("421 4.4.2 mx.example.com Error: timeout exceeded")
	c.closed()
	h.waitLog("timeout after EHLO from " + h.client)

	// In DATA the record says how much had arrived.
	c = h.greeted()
	c.cmd("EHLO x", "250-")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.cmd("DATA", "354")
	c.write("Subject: x\r\n")
	c.expect("421 4.4.2 mx.example.com Error: timeout exceeded")
	h.waitLog("timeout after DATA (12 bytes) from " + h.client)
	if n := len(h.messages(queue.Incoming)); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

func TestLostConnection(t *testing.T) {
	h := newHarness(t, nil, nil, "")
	c := h.greeted()
	c.cmd("EHLO x", "250-")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.conn.Close()
	h.waitLog("lost connection after RCPT from " + h.client)
	h.waitLog("disconnect from " + h.client + " ehlo=1 mail=1 rcpt=1 commands=3")
}

func TestShutdown(t *testing.T) {
	h := newHarness(t, nil, nil, "")
	c := h.greeted()
	c.cmd("EHLO x", "250-")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.cmd("DATA", "354")
	c.write("Subject: x\r\n")
	time.Sleep(50 * time.Millisecond)
	h.cancel()
	c.expect("421 4.3.2 Service shutting down")
	c.closed()
	if n := len(h.messages(queue.Incoming)); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

func TestSessionTimeLimit(t *testing.T) {
	h := newHarness(t, nil, nil, "", func(s *Server) { s.set.sessionLimit = 300 * time.Millisecond })
	c := h.greeted()
	c.expect("421 4.4.2 mx.example.com Error: session time limit exceeded")
	h.waitLog("session time limit exceeded after CONNECT from " + h.client)
}

func TestLineTooLong(t *testing.T) {
	h := newHarness(t, nil, nil, "")
	c := h.greeted()
	c.cmd("NOOP "+strings.Repeat("x", 3000), "500 5.5.2 Error: line too long")
	c.cmd("NOOP", "250")
}

func TestDebugPeerList(t *testing.T) {
	h := newHarness(t, map[string]string{"debug_peer_list": "127.0.0.0/8"}, nil, "")
	c := h.greeted()
	c.cmd("NOOP", "250")
	h.waitLog("< " + h.client + ": NOOP")
	h.waitLog("> " + h.client + ": 250 2.0.0 Ok")
}

// TestPolicy: a relay gate at RCPT, evaluated with smtpd_delay_reject so
// the reject record names the recipient, and HOLD carried to the queue.
func TestPolicy(t *testing.T) {
	gate := PolicyFunc(func(ctx context.Context, st Stage, v *View) (*Decision, error) {
		if st == StageRcpt && strings.HasSuffix(v.Recipient, "@elsewhere.net") {
			return &Decision{Reply: smtp.NewReply(554, "5.7.1", "<"+v.Recipient+">: Relay access denied")}, nil
		}
		if st == StageMail && v.Sender == "hold@example.org" {
			return &Decision{Hold: true, Reason: "held"}, nil
		}
		return nil, nil
	})
	h := newHarness(t, nil, gate, "")
	c := h.greeted()
	c.cmd("EHLO x", "250-")
	c.cmd("MAIL FROM:<hold@example.org>", "250")
	c.cmd("RCPT TO:<u@elsewhere.net>", "554 5.7.1 <u@elsewhere.net>: Relay access denied")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.cmd("DATA", "354")
	c.write(body + ".\r\n")
	c.expect("250 2.0.0 Ok: queued as")
	h.waitLog("NOQUEUE: reject: RCPT from " + h.client + ": 554 5.7.1 <u@elsewhere.net>: Relay access denied; from=<hold@example.org> to=<u@elsewhere.net> proto=ESMTP helo=<x>")
	h.waitLog("NOQUEUE: hold: RCPT from " + h.client + ": held; from=<hold@example.org> to=<b@example.com> proto=ESMTP helo=<x>")
	if n := len(h.messages(queue.Hold)); n != 1 {
		t.Errorf("%d messages on hold, want 1", n)
	}
}

// TestControlBytesEchoed: a bare CR (kept by the command reader under
// "normalize") never reaches a reply or the queue file.
func TestControlBytesEchoed(t *testing.T) {
	h := newHarness(t, map[string]string{"disable_vrfy_command": "no"}, nil, "")
	c := h.greeted()
	c.cmd("EHLO a\x01b", "250-")
	c.cmd("VRFY <x\ry@example.com>", "252 2.0.0 <x?y@example.com>")
	c.cmd("ETRN ex\x01am.ple", "459 <ex?am.ple>: service unavailable")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.cmd("DATA", "354")
	c.write(body + ".\r\n")
	got := c.expect("250 2.0.0 Ok: queued as ")
	info, err := h.q.Stat(queue.Incoming, got[len("250 2.0.0 Ok: queued as "):])
	if err != nil {
		t.Fatal(err)
	}
	if info.Envelope.Helo != "a?b" {
		t.Errorf("helo %q", info.Envelope.Helo)
	}
}

// TestBDATWithoutPipelining: with PIPELINING discarded, the chunk after BDAT
// is not taken for pipelined input.
func TestBDATWithoutPipelining(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_discard_ehlo_keywords": "pipelining"}, nil, "")
	c := h.greeted()
	c.cmd("EHLO x", "250-")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.write("BDAT 14 LAST\r\nSubject: x\r\n\r\n")
	c.expect("250 2.0.0 Ok: 14 bytes queued as")
	c.write("RSET\r\nNOOP\r\n")
	c.expect("554 5.5.0 Error: SMTP protocol synchronization")
}

// TestNoDelayReject: with smtpd_delay_reject = no each stage answers at its
// own command, and a refused HELO is no greeting.
func TestNoDelayReject(t *testing.T) {
	p := PolicyFunc(func(ctx context.Context, st Stage, v *View) (*Decision, error) {
		if st == StageHelo && v.Helo == "bad" {
			return &Decision{Reply: smtp.NewReply(504, "5.5.2", "<bad>: Helo command rejected: need fully-qualified hostname")}, nil
		}
		if st == StageMail && v.Sender == "spam@example.net" {
			return &Decision{Reply: smtp.NewReply(553, "5.7.1", "<spam@example.net>: Sender address rejected")}, nil
		}
		return nil, nil
	})
	h := newHarness(t, map[string]string{"smtpd_delay_reject": "no"}, p, "")
	c := h.greeted()
	c.cmd("EHLO bad", "504 5.5.2 <bad>: Helo command rejected")
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: send HELO/EHLO first")
	c.cmd("EHLO good.example.org", "250-")
	c.cmd("MAIL FROM:<spam@example.net>", "553 5.7.1 <spam@example.net>: Sender address rejected")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	h.waitLog("NOQUEUE: reject: MAIL from " + h.client + ": 553 5.7.1 <spam@example.net>: Sender address rejected; from=<spam@example.net> proto=ESMTP helo=<good.example.org>")
}

func TestBanner(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_banner": "$myhostname ESMTP $mail_name $$5"}, nil, "")
	c := h.dial()
	c.expect("220 mx.example.com ESMTP moat $5")
}

func TestClientPortLogging(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_client_port_logging": "yes"}, nil, "")
	c := h.greeted()
	port := c.conn.LocalAddr().(*net.TCPAddr).Port
	c.cmd("QUIT", "221")
	h.waitLog(fmt.Sprintf("disconnect from %s:%d quit=1 commands=1", h.client, port))
}
