package qmgr

import (
	"bufio"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"moat/internal/queue"
	"moat/internal/smtp"
)

// report is a parsed RFC 3464 notice: its header, its three parts, and
// the delivery-status part's per-message and per-recipient field blocks.
type report struct {
	header mail.Header
	parts  []textproto.MIMEHeader
	bodies []string
	fields []textproto.MIMEHeader // [0] per-message, then one per recipient
}

// parseReport parses raw as RFC 6522 multipart/report with Go's own MIME
// readers, failing the test on anything malformed.
func parseReport(t *testing.T, raw string) *report {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("notice does not parse: %v\n%s", err, raw)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q (%v): want multipart/report; report-type=delivery-status", msg.Header.Get("Content-Type"), err)
	}
	r := &report{header: msg.Header}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for i := 0; i < 10; i++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		r.parts = append(r.parts, p.Header)
		r.bodies = append(r.bodies, string(b))
	}
	if len(r.parts) != 3 {
		t.Fatalf("%d parts, want 3:\n%s", len(r.parts), raw)
	}
	if ct := r.parts[1].Get("Content-Type"); ct != "message/delivery-status" {
		t.Fatalf("second part is %q", ct)
	}
	// RFC 3464 section 2.1: blocks of header fields separated by blank
	// lines.
	for _, block := range strings.Split(strings.ReplaceAll(r.bodies[1], "\r\n", "\n"), "\n\n") {
		if strings.TrimSpace(block) == "" {
			continue
		}
		h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(block + "\n\n"))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("delivery-status block %q: %v", block, err)
		}
		r.fields = append(r.fields, h)
	}
	return r
}

// want checks that header h has field name with value val.
func want(t *testing.T, what string, h textproto.MIMEHeader, name, val string) {
	t.Helper()
	if got := h.Get(name); got != val {
		t.Errorf("%s %s = %q, want %q", what, name, got, val)
	}
}

func TestBounceIsRFC3464Report(t *testing.T) {
	e := newEnv(t, "default_transport = error:5.7.1 we do not relay\n")
	content := "Subject: hello there\r\nMessage-ID: <m1@example>\r\n\r\nbody line\r\n"
	id := e.putWith("bob@mx.test", content, func(env *queue.Envelope) {
		env.EnvID = "ENV-42"
		env.Recipients[0].ORCPT = "rfc822;X@Remote.Example"
		env.Recipients[1].Notify = smtp.NotifyNever
	}, "x@remote.example", "quiet@remote.example", "y@remote.example")
	e.start()
	e.waitFor("notice", 5*time.Second, func() bool { return e.gone(id) && e.count("bob") == 1 })
	e.wantLog(`^postfix/bounce\[PID\]: ` + id + `: sender non-delivery notification: \w+$`)
	r := parseReport(t, e.readOne("bob"))

	want(t, "header", textproto.MIMEHeader(r.header), "From", "MAILER-DAEMON@mx.test (Mail Delivery System)")
	want(t, "header", textproto.MIMEHeader(r.header), "Subject", "Undelivered Mail Returned to Sender")
	want(t, "header", textproto.MIMEHeader(r.header), "To", "bob@mx.test")
	want(t, "header", textproto.MIMEHeader(r.header), "Auto-Submitted", "auto-replied")
	want(t, "header", textproto.MIMEHeader(r.header), "Return-Path", "<>")
	if _, err := r.header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}

	want(t, "part 1", r.parts[0], "Content-Description", "Notification")
	for _, s := range []string{"This is the mail system at host mx.test.",
		"I'm sorry to have to inform you that your message could not",
		"<x@remote.example>: we do not relay", "<y@remote.example>: we do not relay"} {
		if !strings.Contains(r.bodies[0], s) {
			t.Errorf("text lacks %q:\n%s", s, r.bodies[0])
		}
	}
	if strings.Contains(r.bodies[0], "quiet@") {
		t.Errorf("NOTIFY=NEVER recipient reported:\n%s", r.bodies[0])
	}

	if len(r.fields) != 3 {
		t.Fatalf("%d delivery-status blocks, want 3 (message, x, y):\n%s", len(r.fields), r.bodies[1])
	}
	pm := r.fields[0]
	want(t, "per-message", pm, "Reporting-MTA", "dns; mx.test")
	want(t, "per-message", pm, "Original-Envelope-Id", "ENV-42")
	want(t, "per-message", pm, "X-Postfix-Queue-ID", id)
	want(t, "per-message", pm, "X-Postfix-Sender", "rfc822; bob@mx.test")
	if _, err := mail.ParseDate(pm.Get("Arrival-Date")); err != nil {
		t.Errorf("Arrival-Date %q: %v", pm.Get("Arrival-Date"), err)
	}
	x, y := r.fields[1], r.fields[2]
	want(t, "x", x, "Final-Recipient", "rfc822; x@remote.example")
	want(t, "x", x, "Original-Recipient", "rfc822;X@Remote.Example")
	want(t, "x", x, "Action", "failed")
	want(t, "x", x, "Status", "5.7.1")
	want(t, "x", x, "Diagnostic-Code", "X-Postfix; we do not relay")
	want(t, "x", x, "Remote-MTA", "")
	want(t, "y", y, "Final-Recipient", "rfc822; y@remote.example")
	want(t, "y", y, "Original-Recipient", "")

	want(t, "part 3", r.parts[2], "Content-Type", "message/rfc822")
	want(t, "part 3", r.parts[2], "Content-Description", "Undelivered Message")
	orig, err := mail.ReadMessage(strings.NewReader(r.bodies[2]))
	if err != nil {
		t.Fatal(err)
	}
	if orig.Header.Get("Subject") != "hello there" {
		t.Errorf("returned message Subject %q", orig.Header.Get("Subject"))
	}
	if b, _ := io.ReadAll(orig.Body); !strings.Contains(string(b), "body line") {
		t.Errorf("returned message lost its body: %q", b)
	}
}

// RET=HDRS returns only the header; notify_classes=bounce sends the
// postmaster a header-only copy from double_bounce_sender.
func TestBounceRetHdrsAndPostmasterCopy(t *testing.T) {
	e := newEnv(t, "default_transport = error:5.1.1 no such user\nnotify_classes = bounce\nbounce_notice_recipient = pm\n")
	id := e.putWith("bob@mx.test", "Subject: secret\r\n\r\nsecret body\r\n", func(env *queue.Envelope) {
		env.Ret = "HDRS"
	}, "x@remote.example")
	e.start()
	e.waitFor("notices", 5*time.Second, func() bool { return e.gone(id) && e.count("bob") == 1 && e.count("pm") == 1 })
	e.wantLog(`^postfix/bounce\[PID\]: ` + id + `: postmaster non-delivery notification: \w+$`)
	for _, user := range []string{"bob", "pm"} {
		raw := e.readOne(user)
		r := parseReport(t, raw)
		want(t, user, r.parts[2], "Content-Type", "text/rfc822-headers")
		if !strings.Contains(r.bodies[2], "Subject: secret") || strings.Contains(r.bodies[2], "secret body") {
			t.Errorf("%s: headers part %q", user, r.bodies[2])
		}
		if user == "pm" {
			want(t, user, textproto.MIMEHeader(r.header), "Subject", "Postmaster Copy: Undelivered Mail")
			want(t, user, textproto.MIMEHeader(r.header), "Return-Path", "<double-bounce@mx.test>")
		}
	}
}

// A bounce of a null-sender message goes to nobody by default, and to
// 2bounce_notice_recipient with notify_classes=2bounce; a postmaster
// notice that bounces in turn is dropped. Nothing loops.
func TestDoubleBounce(t *testing.T) {
	e := newEnv(t, "default_transport = error:5.1.1 gone\nnotify_classes = 2bounce\n2bounce_notice_recipient = pm\n")
	id := e.put("", "x@remote.example")
	// From double_bounce_sender: its failure is the end of the line.
	id2 := e.put("double-bounce@mx.test", "z@remote.example")
	e.start()
	e.waitFor("double bounce", 5*time.Second, func() bool { return e.gone(id) && e.gone(id2) && e.count("pm") == 1 })
	e.wantLog(`^postfix/bounce\[PID\]: ` + id + `: postmaster non-delivery notification: \w+$`)
	e.wantLog(`^postfix/bounce\[PID\]: warning: ` + id2 + `: undeliverable postmaster notification discarded$`)
	r := parseReport(t, e.readOne("pm"))
	want(t, "2bounce", r.fields[0], "X-Postfix-Sender", "rfc822;")
	want(t, "2bounce", r.fields[1], "Final-Recipient", "rfc822; x@remote.example")
	time.Sleep(200 * time.Millisecond)
	ids, err := e.fix.Queue.List(queue.Incoming)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 || e.count("pm") != 1 {
		t.Errorf("notices keep coming: incoming %v, pm has %d", ids, e.count("pm"))
	}
}

func TestRecipientFieldsFromAgent(t *testing.T) {
	rc := queue.Recipient{Address: "a@b.example", Orig: "alias@b.example"}
	got := recipientFields(rc, result{dsn: "5.1.1", reason: "host mx[1.2.3.4] said: 550 5.1.1 no",
		remoteMTA: "mx.b.example", diagnostic: "smtp; 550 5.1.1 no"}, dsnFailure)
	wantF := []string{"Final-Recipient: rfc822; a@b.example", "Original-Recipient: rfc822;alias@b.example",
		"Action: failed", "Status: 5.1.1", "Remote-MTA: dns; mx.b.example", "Diagnostic-Code: smtp; 550 5.1.1 no"}
	if strings.Join(got, "\n") != strings.Join(wantF, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantF, "\n"))
	}
}
