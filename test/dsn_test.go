package test

import (
	"bufio"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/delivery/smtp/smtpsink"
	"moat/internal/testutil/dnsserver"
)

// TestDSNFromSMTPBounce: a 5xx from smtp-sink bounces the recipient, and
// the notice in the local sender's Maildir parses as an RFC 3464 report
// (RFC 6522 multipart/report read by Go's mime/multipart) naming the
// server and its reply. A notice to a remote sender that bounces in turn
// is a bounce of null-sender mail: it goes nowhere, and nothing loops.
func TestDSNFromSMTPBounce(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	port := smtpsink.FreePort(t, "127.0.0.71")
	smtpsink.Start(t, "127.0.0.71", port, "-f", "RCPT")
	ns := dnsserver.Start(t, "refuse.test. IN A 127.0.0.71")
	s := startServer(t, "mynetworks = 127.0.0.0/8\n"+
		"dns_servers = "+ns.Addr()+"\n"+
		"smtp_tcp_port = "+port+"\n")

	id := sendVia(t, s, "user@moat.test", "someone@refuse.test", "bounce me")
	s.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<someone@refuse\.test>, .*dsn=5\.3\.0, status=bounced`, 30*time.Second)
	s.waitLog(`postfix/bounce\[\d+\]: `+id+`: sender non-delivery notification: \w+`, 10*time.Second)
	s.waitDelivered("user", 1, 30*time.Second)
	msg := onlyNotice(t, s, "user")
	for name, want := range map[string]string{
		"From":           "MAILER-DAEMON@mx.moat.test (Mail Delivery System)",
		"Subject":        "Undelivered Mail Returned to Sender",
		"Return-Path":    "<>",
		"Auto-Submitted": "auto-replied",
	} {
		if got := msg.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	types, bodies := reportParts(t, msg)
	if len(types) != 3 || types[1] != "message/delivery-status" || types[2] != "message/rfc822" {
		t.Fatalf("parts %q", types)
	}
	if !strings.Contains(bodies[0], "<someone@refuse.test>: host refuse.test[127.0.0.71] said: 500 5.3.0 Error: command failed") {
		t.Errorf("text part:\n%s", bodies[0])
	}
	blocks := strings.Split(strings.ReplaceAll(strings.TrimSpace(bodies[1]), "\r\n", "\n"), "\n\n")
	if len(blocks) != 2 {
		t.Fatalf("delivery-status blocks %q", blocks)
	}
	var fields []textproto.MIMEHeader
	for _, b := range blocks {
		h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(b + "\n\n"))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("block %q: %v", b, err)
		}
		fields = append(fields, h)
	}
	for name, want := range map[string]string{
		"Reporting-MTA":      "dns; mx.moat.test",
		"X-Postfix-Queue-ID": id,
		"X-Postfix-Sender":   "rfc822; user@moat.test",
	} {
		if got := fields[0].Get(name); got != want {
			t.Errorf("per-message %s: %q, want %q", name, got, want)
		}
	}
	if _, err := mail.ParseDate(fields[0].Get("Arrival-Date")); err != nil {
		t.Errorf("Arrival-Date: %v", err)
	}
	for name, want := range map[string]string{
		"Final-Recipient": "rfc822; someone@refuse.test",
		"Action":          "failed",
		"Status":          "5.3.0",
		"Remote-MTA":      "dns; refuse.test",
		"Diagnostic-Code": "smtp; 500 5.3.0 Error: command failed",
	} {
		if got := fields[1].Get(name); got != want {
			t.Errorf("per-recipient %s: %q, want %q", name, got, want)
		}
	}
	if orig, err := mail.ReadMessage(strings.NewReader(bodies[2])); err != nil || orig.Header.Get("Subject") != "outbound" {
		t.Errorf("returned message: %v %q", err, bodies[2])
	}

	// A remote sender whose notice is refused too: the notice (from <>)
	// bounces once and is dropped.
	id = sendVia(t, s, "other@refuse.test", "someone@refuse.test", "double")
	line := s.waitLog(`postfix/bounce\[\d+\]: `+id+`: sender non-delivery notification: \w+`, 30*time.Second)
	nid := line[strings.LastIndex(line, " ")+1:]
	nid = strings.TrimSpace(nid)
	s.waitLog(`postfix/smtp\[\d+\]: `+nid+`: to=<other@refuse\.test>, .*status=bounced`, 30*time.Second)
	s.waitLog(`postfix/qmgr\[\d+\]: `+nid+`: removed`, 10*time.Second)
	time.Sleep(time.Second)
	if n := len(regexp.MustCompile(`non-delivery notification`).FindAllString(s.log(), -1)); n != 2 {
		t.Errorf("%d notices, want 2 (one per original message):\n%s", n, s.log())
	}
}

// reportParts checks that msg is an RFC 3464 report (multipart/report;
// report-type=delivery-status) and returns its parts' types and bodies.
func reportParts(t *testing.T, msg *mail.Message) (types, bodies []string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for range 5 {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, p.Header.Get("Content-Type"))
		bodies = append(bodies, string(b))
	}
	return types, bodies
}

// onlyNotice parses the one message in user's Maildir (a notice from
// MAILER-DAEMON); any other count fails the test.
func onlyNotice(t *testing.T, s *server, user string) *mail.Message {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(s.maildir(user), "new", "*"))
	if len(files) != 1 {
		t.Fatalf("notices: %v", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("notice: %v\n%s", err, raw)
	}
	return msg
}
