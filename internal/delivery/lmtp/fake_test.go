package lmtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/queue"
	"moat/internal/smtp"
)

var msg = []byte("Subject: test\r\n\r\nhello\r\n.dot line\r\n")

func TestFakeRcptReplies(t *testing.T) {
	f := newFake(t)
	f.rcpt["full@example.com"] = "452 4.2.2 Mailbox full"
	f.rcpt["gone@example.com"] = "550 no such user here"
	f.start()
	// Without the connection cache the session ends with QUIT.
	a := newAgent(t, t.TempDir(), map[string]string{"lmtp_connection_cache_on_demand": "no"})
	res := deliver(t, a, request("inet:"+f.addr, msg, "ok@example.com", "full@example.com", "gone@example.com"))
	relay := "127.0.0.1[127.0.0.1]:" + f.port
	checkResult(t, res[0], queue.RcptDelivered, "2.0.0", "250 2.0.0 OK saved", relay)
	checkResult(t, res[1], queue.RcptDeferred, "4.2.2",
		"host 127.0.0.1[127.0.0.1] said: 452 4.2.2 Mailbox full (in reply to RCPT TO command)", relay)
	checkResult(t, res[2], queue.RcptBounced, "5.0.0",
		"host 127.0.0.1[127.0.0.1] said: 550 no such user here (in reply to RCPT TO command)", relay)
	if len(f.bodies) != 1 || string(f.bodies[0]) != string(msg) {
		t.Errorf("server got %q", f.bodies)
	}
	cmds := f.Commands()
	want := []string{"LHLO " + testHost, "MAIL FROM:<sender@example.org>", "RCPT TO:<ok@example.com>",
		"RCPT TO:<full@example.com>", "RCPT TO:<gone@example.com>", "DATA", "QUIT"}
	if strings.Join(cmds, "|") != strings.Join(want, "|") {
		t.Errorf("commands\n %q\nwant\n %q", cmds, want)
	}
}

// Per-recipient replies after the body (RFC 2033 section 4.2), one of
// them a refusal, and no PIPELINING: one command at a time.
func TestFakeDataReplies(t *testing.T) {
	f := newFake(t)
	f.lhlo = []string{"ENHANCEDSTATUSCODES"}
	f.dot = []string{"250 2.0.0 <a@example.com> saved", "552 5.2.2 <b@example.com> Quota exceeded"}
	f.start()
	a := newAgent(t, t.TempDir(), nil)
	res := deliver(t, a, request(f.addr, msg, "a@example.com", "b@example.com"))
	relay := "127.0.0.1[127.0.0.1]:" + f.port
	checkResult(t, res[0], queue.RcptDelivered, "2.0.0", "250 2.0.0 <a@example.com> saved", relay)
	checkResult(t, res[1], queue.RcptBounced, "5.2.2",
		"host 127.0.0.1[127.0.0.1] said: 552 5.2.2 <b@example.com> Quota exceeded (in reply to end of DATA command)", relay)
}

func TestFakeMailRefused(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		f := newFake(t)
		if !pipelining {
			f.lhlo = []string{"8BITMIME"}
		}
		f.mail = "421 4.3.2 Service shutting down"
		f.start()
		a := newAgent(t, t.TempDir(), nil)
		res := deliver(t, a, request(f.addr, msg, "a@example.com", "b@example.com"))
		for _, r := range res {
			checkResult(t, r, queue.RcptDeferred, "4.3.2",
				"host 127.0.0.1[127.0.0.1] said: 421 4.3.2 Service shutting down (in reply to MAIL FROM command)",
				"127.0.0.1[127.0.0.1]:"+f.port)
		}
		if len(f.bodies) != 0 {
			t.Error("body sent after MAIL was refused")
		}
	}
}

func TestFakeAllRecipientsRefused(t *testing.T) {
	f := newFake(t)
	f.rcpt["a@example.com"] = "550 5.1.1 <a@example.com> User doesn't exist"
	f.data = "503 5.5.1 No valid recipients"
	f.start()
	res := deliver(t, newAgent(t, t.TempDir(), nil), request(f.addr, msg, "a@example.com"))
	checkResult(t, res[0], queue.RcptBounced, "5.1.1",
		"host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <a@example.com> User doesn't exist (in reply to RCPT TO command)",
		"127.0.0.1[127.0.0.1]:"+f.port)
	if cmds := f.Commands(); cmds[len(cmds)-1] != "QUIT" {
		t.Errorf("commands %q", cmds)
	}
}

func TestFakeGreetingRefused(t *testing.T) {
	f := newFake(t)
	f.greeting = "554 5.3.2 not accepting mail"
	f.start()
	// lmtp_skip_5xx_greeting (default yes) turns a 5xx greeting into a
	// soft error, as smtp_proto.c does: deferred, not bounced.
	res := deliver(t, newAgent(t, t.TempDir(), nil), request(f.addr, msg, "a@example.com"))
	checkResult(t, res[0], queue.RcptDeferred, "4.3.2",
		"host 127.0.0.1[127.0.0.1] refused to talk to me: 554 5.3.2 not accepting mail",
		"127.0.0.1[127.0.0.1]:"+f.port)
	f2 := newFake(t)
	f2.greeting = "554 5.3.2 not accepting mail"
	f2.start()
	res = deliver(t, newAgent(t, t.TempDir(), map[string]string{"lmtp_skip_5xx_greeting": "no"}), request(f2.addr, msg, "a@example.com"))
	checkResult(t, res[0], queue.RcptBounced, "5.3.2",
		"host 127.0.0.1[127.0.0.1] refused to talk to me: 554 5.3.2 not accepting mail",
		"127.0.0.1[127.0.0.1]:"+f2.port)
}

func TestFakeDropInData(t *testing.T) {
	f := newFake(t)
	f.dropInData = 1
	f.start()
	res := deliver(t, newAgent(t, t.TempDir(), nil), request(f.addr, msg, "a@example.com", "b@example.com"))
	relay := "127.0.0.1[127.0.0.1]:" + f.port
	for _, r := range res {
		// The body fits the socket buffer, so the loss shows when the
		// replies are due.
		checkResult(t, r, queue.RcptDeferred, "4.4.2",
			"lost connection with 127.0.0.1[127.0.0.1] while sending end of data -- message may be sent more than once", relay)
	}
}

// A big body against a server that hangs up early: the write fails.
func TestFakeDropInBigBody(t *testing.T) {
	f := newFake(t)
	f.dropInData = 2
	f.start()
	big := []byte(strings.Repeat(strings.Repeat("x", 998)+"\r\n", 8*1024))
	res := deliver(t, newAgent(t, t.TempDir(), nil), request(f.addr, big, "a@example.com"))
	relay := "127.0.0.1[127.0.0.1]:" + f.port
	r := res[0]
	if r.State != queue.RcptDeferred || r.DSN != "4.4.2" || r.Relay != relay ||
		(r.Reason != "lost connection with 127.0.0.1[127.0.0.1] while sending message body" &&
			r.Reason != "lost connection with 127.0.0.1[127.0.0.1] while sending end of data -- message may be sent more than once") {
		t.Errorf("result %+v", r)
	}
}

func TestFakeDataDoneTimeout(t *testing.T) {
	f := newFake(t)
	f.hangAfterDot = true
	f.start()
	a := newAgent(t, t.TempDir(), map[string]string{"lmtp_data_done_timeout": "1s"})
	res := deliver(t, a, request(f.addr, msg, "a@example.com"))
	relay := "127.0.0.1[127.0.0.1]:" + f.port
	checkResult(t, res[0], queue.RcptDeferred, "4.4.2",
		"conversation with 127.0.0.1[127.0.0.1] timed out while sending end of data -- message may be sent more than once", relay)
}

func TestFakeRcpt421(t *testing.T) {
	f := newFake(t)
	f.lhlo = []string{"ENHANCEDSTATUSCODES"}
	f.rcpt["b@example.com"] = "421 4.3.0 too busy"
	f.start()
	res := deliver(t, newAgent(t, t.TempDir(), nil), request(f.addr, msg, "a@example.com", "b@example.com", "c@example.com"))
	relay := "127.0.0.1[127.0.0.1]:" + f.port
	checkResult(t, res[1], queue.RcptDeferred, "4.3.0",
		"host 127.0.0.1[127.0.0.1] said: 421 4.3.0 too busy (in reply to RCPT TO command)", relay)
	for _, i := range []int{0, 2} {
		checkResult(t, res[i], queue.RcptDeferred, "4.4.2", "lost connection with 127.0.0.1[127.0.0.1] while sending RCPT TO", relay)
	}
}

// The ESMTP parameters go out only when offered: SIZE, BODY=8BITMIME,
// SMTPUTF8 and the RFC 3461 ones.
func TestFakeParameters(t *testing.T) {
	f := newFake(t)
	f.lhlo = []string{"PIPELINING", "SIZE 100000", "8BITMIME", "DSN", "SMTPUTF8", "ENHANCEDSTATUSCODES"}
	f.start()
	req := request(f.addr, msg, "a@example.com", "b c@example.com")
	req.Envelope.Flags = queue.Flag8BitMIME | queue.FlagSMTPUTF8
	req.Envelope.Ret = "HDRS"
	req.Envelope.EnvID = "id+1 x"
	req.Recipients[0].Notify = uint8(smtp.NotifySuccess | smtp.NotifyFailure)
	req.Recipients[0].ORCPT = "rfc822;Orig=A@example.com"
	req.Recipients[1].OrigAddress = "alias@example.com"
	res := deliver(t, newAgent(t, t.TempDir(), nil), req)
	for _, r := range res {
		if r.State != queue.RcptDelivered {
			t.Errorf("result %+v", r)
		}
	}
	cmds := f.Commands()
	want := []string{
		"MAIL FROM:<sender@example.org> SIZE=35 BODY=8BITMIME RET=HDRS ENVID=id+2B1+20x SMTPUTF8",
		"RCPT TO:<a@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Orig+3DA@example.com",
		`RCPT TO:<"b c"@example.com> ORCPT=rfc822;alias@example.com`,
	}
	if strings.Join(cmds[1:4], "|") != strings.Join(want, "|") {
		t.Errorf("commands\n %q\nwant\n %q", cmds[1:4], want)
	}

	// Without the extensions none of them is sent.
	g := newFake(t)
	g.start()
	req.Nexthop = g.addr
	req.Envelope.Sender = ""
	deliver(t, newAgent(t, t.TempDir(), nil), req)
	if cmds := g.Commands(); cmds[1] != "MAIL FROM:<>" || cmds[2] != "RCPT TO:<a@example.com>" {
		t.Errorf("commands %q", cmds)
	}
}

func TestFakeSizeAndUTF8(t *testing.T) {
	f := newFake(t)
	f.lhlo = []string{"PIPELINING", "SIZE 10"}
	f.start()
	a := newAgent(t, t.TempDir(), nil)
	res := deliver(t, a, request(f.addr, msg, "a@example.com"))
	checkResult(t, res[0], queue.RcptBounced, "5.3.4",
		"message size 35 exceeds size limit 10 of server 127.0.0.1[127.0.0.1]", "127.0.0.1[127.0.0.1]:"+f.port)

	g := newFake(t)
	g.start()
	req := request(g.addr, msg, "jösé@example.com")
	req.Envelope.Flags = queue.FlagSMTPUTF8
	res = deliver(t, a, req)
	checkResult(t, res[0], queue.RcptBounced, "5.6.7",
		"SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]", "127.0.0.1[127.0.0.1]:"+g.port)
	// UTF-8 only in the headers goes through without SMTPUTF8.
	req = request(g.addr, []byte("Subject: héllo\r\n\r\nx\r\n"), "jose@example.com")
	req.Envelope.Flags = queue.FlagSMTPUTF8
	res = deliver(t, a, req)
	if res[0].State != queue.RcptDelivered {
		t.Errorf("result %+v", res[0])
	}
}

func TestConnectRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	a := newAgent(t, t.TempDir(), nil)
	res := deliver(t, a, request("inet:"+addr, msg, "a@example.com", "b@example.com"))
	for _, r := range res {
		checkResult(t, r, queue.RcptDeferred, "4.4.1",
			"connect to 127.0.0.1[127.0.0.1]:"+port+": Connection refused", "none")
	}
	res = deliver(t, a, request("unix:private/missing", msg, "a@example.com"))
	checkResult(t, res[0], queue.RcptDeferred, "4.4.1",
		"connect to "+testHost+"[private/missing]: No such file or directory", "none")

	// A socket file nobody listens on.
	dir := t.TempDir()
	ul, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	ul.(*net.UnixListener).SetUnlinkOnClose(false)
	ul.Close()
	if _, err := os.Stat(filepath.Join(dir, "sock")); err != nil {
		t.Fatal(err)
	}
	res = deliver(t, newAgent(t, dir, nil), request("unix:sock", msg, "a@example.com"))
	checkResult(t, res[0], queue.RcptDeferred, "4.4.1",
		"connect to "+testHost+"[sock]: Connection refused", "none")

	res = deliver(t, a, request("inet:[bad", msg, "a@example.com"))
	checkResult(t, res[0], queue.RcptDeferred, "4.3.5", "Server configuration error", "none")
}

// More recipients than one pipelined batch: replies are read between
// batches, and every recipient gets the reply meant for it.
func TestFakeManyRecipients(t *testing.T) {
	f := newFake(t)
	f.rcpt["r137@example.com"] = "550 5.1.1 unknown"
	f.start()
	var rcpts []string
	for i := 0; i < 250; i++ { // more than two of smtpclient's pipelined batches of 100
		rcpts = append(rcpts, fmt.Sprintf("r%d@example.com", i))
	}
	res := deliver(t, newAgent(t, t.TempDir(), nil), request(f.addr, msg, rcpts...))
	for i, r := range res {
		want := queue.RcptDelivered
		if i == 137 {
			want = queue.RcptBounced
		}
		if r.State != want {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if n := len(f.Commands()); n != len(rcpts)+3 {
		t.Errorf("%d commands", n)
	}
}

// A cancelled context (the queue manager stopping) ends the session and
// defers everyone, whether the server is silent after the body or from
// the start.
func TestFakeCancel(t *testing.T) {
	for _, greeting := range []string{"", "none"} {
		f := newFake(t)
		f.hangAfterDot = true
		f.greeting = greeting
		f.start()
		a := newAgent(t, t.TempDir(), nil)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		start := time.Now()
		res := a.Deliver(ctx, request(f.addr, msg, "a@example.com"))
		if time.Since(start) > 10*time.Second || len(res) != 1 || res[0].State != queue.RcptDeferred {
			t.Fatalf("greeting %q: after %v: %+v", greeting, time.Since(start), res)
		}
	}
}

// Under a chroot jail at queue_directory the configured absolute path is
// missing, and a relative socket name is found from the working
// directory, as Postfix's lmtp(8) finds it.
func TestRelativeSocketFromWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "private"), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "private", "dovecot-lmtp"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeOn(t, ln)
	f.start()
	t.Chdir(dir)
	a := newAgent(t, "/nonexistent/queue", nil)
	res := deliver(t, a, request("unix:private/dovecot-lmtp", msg, "a@example.com"))
	checkResult(t, res[0], queue.RcptDelivered, "2.0.0", "250 2.0.0 OK saved", testHost+"[private/dovecot-lmtp]")
}

type brokenContent struct{ n int }

func (b *brokenContent) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errors.New("queue file checksum mismatch")
	}
	n := min(len(p), b.n)
	for i := range p[:n] {
		p[i] = 'x'
	}
	b.n -= n
	return n, nil
}

// A queue file found damaged while the body is sent: the DATA is never
// ended, so the server stores nothing, and the mail is deferred.
func TestFakeDamagedContent(t *testing.T) {
	f := newFake(t)
	f.start()
	req := request(f.addr, msg, "a@example.com")
	req.Content = func() io.Reader { return &brokenContent{n: 100} }
	res := deliver(t, newAgent(t, t.TempDir(), nil), req)
	checkResult(t, res[0], queue.RcptDeferred, "4.3.0", "unreadable mail queue entry", "127.0.0.1[127.0.0.1]:"+f.port)
	time.Sleep(50 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) != 0 {
		t.Errorf("server stored %q", f.bodies)
	}
}

// lmtp_line_length_limit (998) breaks a longer line with CRLF SPACE, as
// Postfix does; 0 turns that off.
func TestFakeLineLimit(t *testing.T) {
	long := strings.Repeat("a", 2000)
	content := []byte("Subject: long\r\n\r\n" + long + "\r\n")
	for _, tc := range []struct {
		limit, want string
	}{
		{"", "Subject: long\r\n\r\n" + long[:998] + "\r\n " + long[998:1995] + "\r\n " + long[1995:] + "\r\n"},
		{"0", string(content)},
	} {
		f := newFake(t)
		f.start()
		over := map[string]string{}
		if tc.limit != "" {
			over["lmtp_line_length_limit"] = tc.limit
		}
		res := deliver(t, newAgent(t, t.TempDir(), over), request(f.addr, content, "a@example.com"))
		if res[0].State != queue.RcptDelivered {
			t.Fatalf("result %+v", res[0])
		}
		f.mu.Lock()
		got := string(f.bodies[0])
		f.mu.Unlock()
		if got != tc.want {
			t.Errorf("limit %q: server got %d bytes, want %d", tc.limit, len(got), len(tc.want))
		}
	}
}

// A second request to the same next hop reuses the connection after a
// RSET probe; one the server closed while idle is replaced without any
// error; limits end reuse; Close sends QUIT.
func TestConnectionCache(t *testing.T) {
	f := newFake(t)
	f.start()
	a := newAgent(t, t.TempDir(), map[string]string{"lmtp_connection_reuse_count_limit": "3"})
	for i := 0; i < 4; i++ {
		res := deliver(t, a, request(f.addr, msg, "a@example.com"))
		if res[0].State != queue.RcptDelivered || res[0].Relay != "127.0.0.1[127.0.0.1]:"+f.port {
			t.Fatalf("delivery %d: %+v", i, res[0])
		}
	}
	want := "LHLO|MAIL|RCPT|DATA|RSET|MAIL|RCPT|DATA|RSET|MAIL|RCPT|DATA|QUIT|LHLO|MAIL|RCPT|DATA"
	if got := verbs(f.Commands()); got != want {
		t.Errorf("commands\n %s\nwant\n %s", got, want)
	}
	a.Close()
	waitFor(t, func() bool { return strings.HasSuffix(verbs(f.Commands()), "DATA|QUIT") })
	if res := deliver(t, a, request(f.addr, msg, "a@example.com")); res[0].State != queue.RcptDelivered {
		t.Fatalf("after Close: %+v", res[0])
	}
}

func TestConnectionCacheStale(t *testing.T) {
	f := newFake(t)
	f.start()
	a := newAgent(t, t.TempDir(), nil)
	deliver(t, a, request(f.addr, msg, "a@example.com"))
	// The server drops the idle connection; the next delivery's probe
	// fails and a new connection takes over.
	f.closeAll()
	res := deliver(t, a, request(f.addr, msg, "b@example.com"))
	if res[0].State != queue.RcptDelivered {
		t.Fatalf("%+v", res[0])
	}
	if got := verbs(f.Commands()); got != "LHLO|MAIL|RCPT|DATA|LHLO|MAIL|RCPT|DATA" {
		t.Errorf("commands %s", got)
	}

	// An idle connection past lmtp_connection_cache_time_limit is ended.
	g := newFake(t)
	g.start()
	b := newAgent(t, t.TempDir(), map[string]string{"lmtp_connection_cache_time_limit": "1s"})
	deliver(t, b, request(g.addr, msg, "a@example.com"))
	waitFor(t, func() bool { return strings.HasSuffix(verbs(g.Commands()), "DATA|QUIT") })
}

func verbs(cmds []string) string {
	var v []string
	for _, c := range cmds {
		w, _, _ := strings.Cut(c, " ")
		v = append(v, w)
	}
	return strings.Join(v, "|")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A host name is resolved and each address tried in turn; relay= names
// the host and the address that answered, as Postfix logs it.
func TestHostName(t *testing.T) {
	f := newFake(t)
	f.start()
	res := deliver(t, newAgent(t, t.TempDir(), nil), request("inet:localhost:"+f.port, msg, "a@example.com"))
	checkResult(t, res[0], queue.RcptDelivered, "2.0.0", "250 2.0.0 OK saved", "localhost[127.0.0.1]:"+f.port)
}

// With lmtp_connection_cache_on_demand = no only the destinations in
// lmtp_connection_cache_destinations are cached.
func TestConnectionCacheDestinations(t *testing.T) {
	listed, other := newFake(t), newFake(t)
	listed.start()
	other.start()
	a := newAgent(t, t.TempDir(), map[string]string{
		"lmtp_connection_cache_on_demand":    "no",
		"lmtp_connection_cache_destinations": "inet:" + listed.addr,
	})
	for i := 0; i < 2; i++ {
		deliver(t, a, request("inet:"+listed.addr, msg, "a@example.com"))
		deliver(t, a, request(other.addr, msg, "a@example.com"))
	}
	if got := verbs(listed.Commands()); got != "LHLO|MAIL|RCPT|DATA|RSET|MAIL|RCPT|DATA" {
		t.Errorf("listed: %s", got)
	}
	if got := verbs(other.Commands()); got != "LHLO|MAIL|RCPT|DATA|QUIT|LHLO|MAIL|RCPT|DATA|QUIT" {
		t.Errorf("other: %s", got)
	}
}
