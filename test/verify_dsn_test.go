package test

import (
	"bufio"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
)

// TestSendmailVerifyDSN: the report of sendmail -bv is an RFC 3464
// delivery status report, as Postfix's bounce(8) trace service sends it:
// multipart/report with the human-readable text, a message/delivery-status
// part whose per-recipient blocks say "Action: deliverable" (an existing
// local user, 2.0.0) and "Action: undeliverable" (an unknown one, 5.1.1),
// and the request's header as text/rfc822-headers. Read with Go's own
// net/mail and mime/multipart, so a malformed report fails here.
func TestSendmailVerifyDSN(t *testing.T) {
	e := newSubmitEnv(t, true)
	sender := &e.rcpt[3]
	exists := e.rcpt[0].name + "@mx.moat.test"
	nosuch := noSuchUser() + "@mx.moat.test"
	if _, stderr, code := e.run(sender, "", e.sendmail, "-bv", exists, nosuch); code != 0 {
		t.Fatalf("sendmail -bv exited %d: %s", code, stderr)
	}
	raw := e.message(sender.name, "Mail Delivery Status Report")

	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("report does not parse: %v\n%s", err, raw)
	}
	if got := msg.Header.Get("Return-Path"); got != "<>" {
		t.Errorf("Return-Path %q, want <>", got)
	}
	if got := msg.Header.Get("Auto-Submitted"); got != "auto-replied" {
		t.Errorf("Auto-Submitted %q", got)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q (%v), want multipart/report; report-type=delivery-status", msg.Header.Get("Content-Type"), err)
	}
	var types, bodies []string
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for i := 0; i < 5; i++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v\n%s", i, err, raw)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		types = append(types, p.Header.Get("Content-Type"))
		bodies = append(bodies, string(body))
	}
	if len(types) != 3 || !strings.HasPrefix(types[0], "text/plain") || types[1] != "message/delivery-status" || types[2] != "text/rfc822-headers" {
		t.Fatalf("parts %q, want text/plain, message/delivery-status, text/rfc822-headers:\n%s", types, raw)
	}
	for _, s := range []string{"Enclosed is the mail delivery report that you requested.",
		"<" + exists + ">: delivery via local: delivers to maildir",
		"<" + nosuch + ">: delivery via local: unknown user: "} {
		if !strings.Contains(bodies[0], s) {
			t.Errorf("text part lacks %q:\n%s", s, bodies[0])
		}
	}

	// RFC 3464 section 2.1: the per-message block, then one block per
	// recipient, separated by blank lines.
	var blocks []textproto.MIMEHeader
	for _, block := range strings.Split(strings.ReplaceAll(bodies[1], "\r\n", "\n"), "\n\n") {
		if strings.TrimSpace(block) == "" {
			continue
		}
		h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(block + "\n\n"))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("delivery-status block %q: %v", block, err)
		}
		blocks = append(blocks, h)
	}
	if len(blocks) != 3 {
		t.Fatalf("%d delivery-status blocks, want 3:\n%s", len(blocks), bodies[1])
	}
	check := func(what string, h textproto.MIMEHeader, name, want string) {
		t.Helper()
		if got := h.Get(name); got != want {
			t.Errorf("%s: %s %q, want %q", what, name, got, want)
		}
	}
	check("per-message", blocks[0], "Reporting-MTA", "dns; mx.moat.test")
	check("per-message", blocks[0], "X-Postfix-Sender", "rfc822; "+sender.name+"@mx.moat.test")
	if blocks[0].Get("X-Postfix-Queue-ID") == "" {
		t.Errorf("no X-Postfix-Queue-ID: %v", blocks[0])
	}
	if _, err := mail.ParseDate(blocks[0].Get("Arrival-Date")); err != nil {
		t.Errorf("Arrival-Date %q: %v", blocks[0].Get("Arrival-Date"), err)
	}
	check(exists, blocks[1], "Final-Recipient", "rfc822; "+exists)
	check(exists, blocks[1], "Action", "deliverable")
	check(exists, blocks[1], "Status", "2.0.0")
	check(exists, blocks[1], "Diagnostic-Code", "X-Postfix; delivery via local: delivers to maildir")
	check(nosuch, blocks[2], "Final-Recipient", "rfc822; "+nosuch)
	check(nosuch, blocks[2], "Action", "undeliverable")
	check(nosuch, blocks[2], "Status", "5.1.1")
	if d := blocks[2].Get("Diagnostic-Code"); !strings.HasPrefix(d, "X-Postfix; delivery via local: unknown user: ") {
		t.Errorf("%s: Diagnostic-Code %q", nosuch, d)
	}

	// The request's header, parseable as one (the part ends where the
	// header did, without its blank line).
	h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(bodies[2] + "\n"))).ReadMIMEHeader()
	if err != nil {
		t.Errorf("text/rfc822-headers part does not parse: %v\n%q", err, bodies[2])
	} else if h.Get("From") == "" {
		t.Errorf("returned header has no From: %q", bodies[2])
	}
}
