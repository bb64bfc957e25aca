package qmgr

import (
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/queue"
	"moat/internal/smtp"
)

// TestDelayWarningOnce: a message deferred past delay_warning_time gets
// one RFC 3464 "delayed" report to its sender, listing the recipients
// whose NOTIFY allows DELAY, and a postmaster copy (notify_classes
// delay); a restart and a second deferral send no second warning, and
// mail from the null sender warns only the postmaster.
func TestDelayWarningOnce(t *testing.T) {
	e := newEnv(t, "default_transport = retry:4.4.1 host busy\ndelay_warning_time = 1h\n"+
		"notify_classes = delay\ndelay_notice_recipient = pm@mx.test\nmaximal_queue_lifetime = 3d\n")
	old := func(env *queue.Envelope) {
		env.Arrival = time.Now().Add(-2 * time.Hour)
		if len(env.Recipients) > 1 {
			env.Recipients[1].Notify = smtp.NotifyFailure // no DELAY
		}
	}
	id := e.putWith("sam@mx.test", "Subject: slow\r\nMessage-ID: <s1@example>\r\n\r\nbody\r\n", old,
		"x@remote.example", "nodelay@remote.example")
	null := e.putWith("", "Subject: a bounce\r\n\r\nbody\r\n", old, "y@remote.example")
	fresh := e.put("sam@mx.test", "z@remote.example") // not yet an hour old
	e.start()
	e.waitFor("warnings", 10*time.Second, func() bool { return e.count("sam") == 1 && e.count("pm") == 2 })
	e.wantLog(`^postfix/bounce\[PID\]: ` + id + `: sender delay notification: \w+$`)
	e.wantLog(`^postfix/bounce\[PID\]: ` + null + `: postmaster delay notification: \w+$`)

	r := parseReport(t, e.readOne("sam"))
	want(t, "header", textproto.MIMEHeader(r.header), "Subject", "Delayed Mail (still being retried)")
	want(t, "header", textproto.MIMEHeader(r.header), "Return-Path", "<>")
	for _, s := range []string{"# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
		"Your message could not be delivered for more than 1 hour(s).",
		"It will be retried until it is 3 day(s) old.", "<x@remote.example>: host busy"} {
		if !strings.Contains(r.bodies[0], s) {
			t.Errorf("text lacks %q:\n%s", s, r.bodies[0])
		}
	}
	if strings.Contains(r.bodies[0], "nodelay@") || len(r.fields) != 2 {
		t.Errorf("NOTIFY without DELAY reported, or %d blocks:\n%s", len(r.fields), r.bodies[1])
	}
	x := r.fields[1]
	want(t, "recipient", x, "Final-Recipient", "rfc822; x@remote.example")
	want(t, "recipient", x, "Action", "delayed")
	want(t, "recipient", x, "Status", "4.4.1")
	if d, err := mail.ParseDate(x.Get("Will-Retry-Until")); err != nil || time.Until(d) < 69*time.Hour {
		t.Errorf("Will-Retry-Until %q (%v): want arrival + 3 days", x.Get("Will-Retry-Until"), err)
	}
	if ct := r.parts[2].Get("Content-Type"); ct != "text/rfc822-headers" {
		t.Errorf("returned part %q: a delay warning returns the header only", ct)
	}

	// A restart forgets nothing: every deferred message is retried at
	// start, deferred again, and no second warning goes out.
	deferred := regexp.MustCompile(`^postfix/error\[PID\]: ` + id + `: to=<x@remote.example>, .*status=deferred`)
	countDeferred := func() int {
		n := 0
		for _, l := range e.buf.all() {
			if deferred.MatchString(l) {
				n++
			}
		}
		return n
	}
	e.waitFor("first deferral logged", 5*time.Second, func() bool { return countDeferred() >= 1 })
	e.restart()
	e.waitFor("second deferral", 10*time.Second, func() bool { return countDeferred() >= 2 })
	e.waitFor("the fresh message deferred again", 10*time.Second, func() bool { return e.inQueue(queue.Deferred, fresh) })
	time.Sleep(500 * time.Millisecond)
	if n, p := e.count("sam"), e.count("pm"); n != 1 || p != 2 {
		t.Errorf("after a restart sam has %d notices, pm %d; want 1 and 2", n, p)
	}
	m, err := e.fix.Queue.Open(queue.Deferred, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Envelope.Warned.IsZero() {
		t.Error("the queue file does not record the warning")
	}
}
