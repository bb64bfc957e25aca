package qmgr

import (
	"context"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"moat/internal/delivery"
	"moat/internal/queue"
)

// verifyingAgent is the spool agent with a Verifier: it says what Deliver
// would do, using the same user check, and never writes.
type verifyingAgent struct {
	*spoolAgent
	verified int
}

func (a *verifyingAgent) Verify(ctx context.Context, req *delivery.Request) []delivery.Result {
	var out []delivery.Result
	for _, r := range req.Recipients {
		a.verified++
		user, _, _ := strings.Cut(strings.ToLower(r.Address), "@")
		res := delivery.Result{Index: r.Index, Relay: "local", State: queue.RcptDelivered, DSN: "2.0.0", Reason: "delivers to maildir"}
		switch {
		case !safeTestUser(user):
			res.State, res.DSN, res.Reason = queue.RcptBounced, "5.1.1", `unknown user: "`+user+`"`
		case user == "passed":
			res = delivery.Result{Index: r.Index, Pass: "discard:passed on", Address: "other@mx.test"}
		case user == "loop":
			res = delivery.Result{Index: r.Index, Pass: "local"}
		}
		out = append(out, res)
	}
	return out
}

// putVerify queues a sendmail -bv request as pickup does.
func (e *env) putVerify(sender string, rcpts ...string) string {
	e.t.Helper()
	return e.putVerifyFilter(sender, "", rcpts...)
}

// putVerifyFilter is putVerify for a message with a content filter.
func (e *env) putVerifyFilter(sender, filter string, rcpts ...string) string {
	e.t.Helper()
	return e.putWith(sender, "From: "+sender+"\r\nSubject: probe\r\n\r\nsecret body\r\n", func(env *queue.Envelope) {
		env.Flags = queue.FlagVerify
		env.Filter = filter
	}, rcpts...)
}

// verifyingLocal gives the test manager agent as its local transport,
// writing through a spool agent of its own.
func verifyingLocal(agent *verifyingAgent) map[string]AgentFactory {
	return map[string]AgentFactory{
		"local": func(d delivery.Deps) (delivery.Agent, error) {
			a, err := newSpoolAgent(d)
			if err != nil {
				return nil, err
			}
			agent.spoolAgent = a.(*spoolAgent)
			return agent, nil
		},
	}
}

// TestVerifyReport: a -bv request is answered by the agent's Verifier and
// the transports' availability, logged deliverable/undeliverable, mailed
// to the sender as one "Mail Delivery Status Report", and removed; no
// recipient gets mail.
func TestVerifyReport(t *testing.T) {
	agent := &verifyingAgent{}
	e := newEnvWith(t, "default_transport = discard:we drop it\ntransport_maps = inline:{ {fail.example=error:5.7.1 no such domain} }\n", "", verifyingLocal(agent))
	id := e.putVerify("bob@mx.test", "alice@mx.test", "../x@mx.test", "carol@remote.example", "dan@fail.example")
	e.start()
	e.waitFor("report", 5*time.Second, func() bool { return e.gone(id) && e.count("bob") == 1 })
	if n := e.count("alice"); n != 0 {
		t.Errorf("alice got %d messages from a -bv request", n)
	}
	raw := e.readOne("bob")
	for _, want := range []string{
		"Return-Path: <>\n", "From: MAILER-DAEMON@mx.test (Mail Delivery System)\n",
		"To: <bob@mx.test>\n",
		"This is the mail system at host mx.test.\n\nEnclosed is the mail delivery report that you requested.\n",
		"\n<alice@mx.test>: delivery via local: delivers to maildir\n",
		"\n<../x@mx.test>: delivery via local: unknown user: \"../x\"\n",
		"\n<carol@remote.example>: we drop it\n",
		"\n<dan@fail.example>: no such domain\n",
	} {
		if !strings.Contains(raw, want) {
			t.Errorf("report lacks %q:\n%s", want, raw)
		}
	}
	r := parseReport(t, raw)
	h := textproto.MIMEHeader(r.header)
	want(t, "header", h, "Subject", "Mail Delivery Status Report")
	want(t, "header", h, "Auto-Submitted", "auto-replied")
	want(t, "part 1", r.parts[0], "Content-Description", "Notification")
	want(t, "part 2", r.parts[1], "Content-Description", "Delivery report")
	if len(r.fields) != 5 {
		t.Fatalf("%d delivery-status blocks, want 5 (message and 4 recipients):\n%s", len(r.fields), r.bodies[1])
	}
	pm := r.fields[0]
	want(t, "per-message", pm, "Reporting-MTA", "dns; mx.test")
	want(t, "per-message", pm, "X-Postfix-Queue-ID", id)
	want(t, "per-message", pm, "X-Postfix-Sender", "rfc822; bob@mx.test")
	if _, err := mail.ParseDate(pm.Get("Arrival-Date")); err != nil {
		t.Errorf("Arrival-Date %q: %v", pm.Get("Arrival-Date"), err)
	}
	for i, w := range []struct{ rcpt, action, status, diag string }{
		{"alice@mx.test", "deliverable", "2.0.0", "X-Postfix; delivery via local: delivers to maildir"},
		{"../x@mx.test", "undeliverable", "5.1.1", `X-Postfix; delivery via local: unknown user: "../x"`},
		{"carol@remote.example", "deliverable", "2.0.0", "X-Postfix; we drop it"},
		{"dan@fail.example", "undeliverable", "5.7.1", "X-Postfix; no such domain"},
	} {
		f := r.fields[i+1]
		want(t, w.rcpt, f, "Final-Recipient", "rfc822; "+w.rcpt)
		want(t, w.rcpt, f, "Original-Recipient", "")
		want(t, w.rcpt, f, "Action", w.action)
		want(t, w.rcpt, f, "Status", w.status)
		want(t, w.rcpt, f, "Diagnostic-Code", w.diag)
		want(t, w.rcpt, f, "Will-Retry-Until", "")
	}
	// bounce_trace_service returns the header only (DSN_RET_HDRS), and
	// not as "Undelivered".
	want(t, "part 3", r.parts[2], "Content-Type", "text/rfc822-headers")
	want(t, "part 3", r.parts[2], "Content-Description", "Message Headers")
	if !strings.Contains(r.bodies[2], "Subject: probe") || strings.Contains(r.bodies[2], "secret body") {
		t.Errorf("headers part %q", r.bodies[2])
	}
	e.wantLog(`^postfix/local\[PID\]: ` + id + `: to=<alice@mx.test>, relay=local, ` + delaysRE + `dsn=2.0.0, status=deliverable \(delivers to maildir\)$`)
	e.wantLog(`^postfix/local\[PID\]: ` + id + `: to=<../x@mx.test>, relay=local, .*dsn=5.1.1, status=undeliverable \(unknown user: "../x"\)$`)
	e.wantLog(`^postfix/discard\[PID\]: ` + id + `: to=<carol@remote.example>, relay=none, .*status=deliverable \(we drop it\)$`)
	e.wantLog(`^postfix/error\[PID\]: ` + id + `: to=<dan@fail.example>, relay=none, .*dsn=5.7.1, status=undeliverable \(no such domain\)$`)
	e.wantLog(`^postfix/bounce\[PID\]: ` + id + `: sender delivery status notification: \w+$`)
	e.wantLog(`^postfix/qmgr\[PID\]: ` + id + `: removed$`)
	for _, l := range e.logs() {
		if strings.Contains(l, " "+id+": ") && (strings.Contains(l, "status=sent") || strings.Contains(l, "status=bounced")) {
			t.Errorf("a -bv request logged a delivery: %s", l)
		}
	}
	if agent.verified != 2 {
		t.Errorf("Verify saw %d recipients, want 2", agent.verified)
	}
}

// TestVerifyWithoutVerifier: an agent that cannot judge addresses is
// reported by its transport's availability ("delivery via local") and is
// never asked to deliver; a transport that does not exist, or has no
// agent, is undeliverable. A remote sender gets no report (no outbound
// delivery yet) and the request is still removed.
func TestVerifyWithoutVerifier(t *testing.T) {
	e := newEnv(t, "transport_maps = inline:{nowhere.example=nosuch:}\n")
	id := e.putVerify("bob@mx.test", "alice@mx.test", "carol@remote.example", "x@nowhere.example")
	e.start()
	e.waitFor("report", 5*time.Second, func() bool { return e.gone(id) && e.count("bob") == 1 })
	if n := e.count("alice"); n != 0 {
		t.Errorf("alice got %d messages from a -bv request", n)
	}
	report := e.readOne("bob")
	for _, want := range []string{
		"\n<alice@mx.test>: delivery via local\n",
		"\n<carol@remote.example>: delivery via smtp is not available yet in this version of moat\n",
		"\n<x@nowhere.example>: mail transport unavailable\n",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	e.wantLog(`^postfix/local\[PID\]: ` + id + `: to=<alice@mx.test>, relay=none, .*dsn=2.0.0, status=deliverable \(delivery via local\)$`)
	e.wantLog(`^postfix/qmgr\[PID\]: ` + id + `: to=<x@nowhere.example>, relay=none, .*dsn=4.3.0, status=undeliverable \(mail transport unavailable\)$`)

	remote := e.putVerify("someone@remote.example", "alice@mx.test")
	e.waitFor("removal", 5*time.Second, func() bool { return e.gone(remote) })
	e.wantLog(`^postfix/qmgr\[PID\]: ` + remote + `: no delivery status report for <someone@remote.example>: not a local sender$`)
	if n := e.count("alice"); n != 0 {
		t.Errorf("alice got %d messages from a -bv request", n)
	}
}

// TestVerifyPassAndFilter: an agent's pass-on (local(8)'s
// mailbox_transport) is followed to the next transport's verdict, a pass
// loop ends after maxPasses, and a content filter is skipped as Postfix's
// qmgr skips it for trace-only requests, while an error: filter (a
// header_checks REJECT) still answers.
func TestVerifyPassAndFilter(t *testing.T) {
	agent := &verifyingAgent{}
	e := newEnvWith(t, "", "", verifyingLocal(agent))
	id := e.putVerifyFilter("bob@mx.test", "smtp:[127.0.0.1]:10025", "passed@mx.test", "loop@mx.test", "alice@mx.test")
	e.start()
	e.waitFor("report", 5*time.Second, func() bool { return e.gone(id) && e.count("bob") == 1 })
	report := e.readOne("bob")
	for _, want := range []string{
		"\n<passed@mx.test>: passed on\n",
		"\n<loop@mx.test>: mail transport loop: local passes to local\n",
		"\n<alice@mx.test>: delivery via local: delivers to maildir\n",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	e.wantLog(`^postfix/discard\[PID\]: ` + id + `: to=<passed@mx.test>, relay=none, .*status=deliverable \(passed on\)$`)

	rej := e.putVerifyFilter("bob@mx.test", "error:5.7.1 header rejected", "alice@mx.test")
	e.waitFor("second report", 5*time.Second, func() bool { return e.gone(rej) && e.count("bob") == 2 })
	e.wantLog(`^postfix/error\[PID\]: ` + rej + `: to=<alice@mx.test>, relay=none, .*dsn=5.7.1, status=undeliverable \(header rejected\)$`)
	if n := e.count("alice"); n != 0 {
		t.Errorf("alice got %d messages from -bv requests", n)
	}
}

// FuzzVerifyReport: whatever the envelope, the agents' texts and the
// request hold, a -bv report parses as a three-part RFC 6522 report with
// one delivery-status block per recipient whose Action is the verdict,
// returns the header only, and nothing in it can add a header or end a
// part early.
func FuzzVerifyReport(f *testing.F) {
	f.Add("bob@mx.test", "alice@mx.test", "", "local", "delivers to maildir", "Subject: probe\r\n\r\nbody\r\n", true)
	f.Add("bob@mx.test", "../x@mx.test", "team@mx.test", "local", `unknown user: "../x"`, "From: a\r\n", false)
	f.Add("s\r\nBcc: evil@x", "r\nX: y>", "o\r\n\r\n", "re\r\nlay", "reason\r\n--", "Subject: x\r\n\r\n--boundary\r\n", false)
	f.Fuzz(func(t *testing.T, sender, rcpt, orig, relay, reason, content string, ok bool) {
		m := &Manager{
			now: func() time.Time { return time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC) },
			set: settings{myhostname: "mx.test", dsn: dsnSettings{sizeLimit: 50000}},
		}
		env := &queue.Envelope{Sender: sender, Arrival: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC),
			Size: int64(len(content)), Flags: queue.FlagVerify,
			Recipients: []queue.Recipient{{Address: rcpt, Orig: orig}, {Address: "second@example.org"}}}
		r := result{state: queue.RcptBounced, dsn: "5.1.1", reason: reason, relay: relay}
		action := "undeliverable"
		if ok {
			r.state, r.dsn, action = queue.RcptDelivered, "2.0.0", "deliverable"
		}
		items := []bounceItem{{index: 0, res: traced(r)}, {index: 1, res: traced(r)}}
		b, err := m.buildDSN("4jXnx21TLXz1SWJj", env, strings.NewReader(content), items, dsnNotice{kind: dsnVerify, to: sender, headersOnly: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		rep := checkFuzzedReport(t, b, "Mail Delivery Status Report", action, r.dsn)
		if ct := rep.parts[2].Get("Content-Type"); ct != "text/rfc822-headers" {
			t.Fatalf("third part is %q", ct)
		}
	})
}
