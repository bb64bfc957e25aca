package lmtp_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/lmtp"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
	"moat/internal/qmgr"
	"moat/internal/queue"
	"moat/internal/queue/queuetest"
	"moat/internal/testutil/dovecot"
)

// The queue manager delivers hosted-domain mail through the agent to the
// real Dovecot, the Postfix + Dovecot set-up of LMTP_README:
// virtual_transport = lmtp:unix:PATH. The log lines are the ones Postfix
// writes, relay=myhostname[PATH] included, and an unknown user bounces
// while the known one is delivered.
func TestQueueManagerToDovecot(t *testing.T) {
	dv := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice@example.com": ""}})
	fix := queuetest.New(t, "myhostname = mx.test\nmydestination = mx.test\n"+
		"virtual_mailbox_domains = example.com\nvirtual_transport = lmtp:unix:"+dv.LMTPSocket+"\n")
	cfg, err := config.Load(fix.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	sink := &maillogtest.Sink{}
	log := maillog.New(maillog.Options{Sink: sink, Fallback: sink, SyslogName: "postfix", Daemon: "qmgr", PID: 1})
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	m, err := qmgr.New(qmgr.Deps{Config: cfg, Log: log, Queue: fix.Queue,
		Agents: map[string]qmgr.AgentFactory{"lmtp": delivery.Factory(lmtp.New)}})
	if err != nil {
		t.Fatal(err)
	}

	w, err := fix.Queue.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	content := "Subject: via qmgr\r\n\r\nhello\r\n.dot\r\n"
	w.WriteString(content)
	w.Envelope.Sender = "sender@example.org"
	w.Envelope.Recipients = []queue.Recipient{{Address: "alice@example.com"}, {Address: "nobody@example.com"}}
	id, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("queue manager did not stop")
		}
	}()

	relay := regexp.QuoteMeta("mx.test[" + dv.LMTPSocket + "]")
	wants := []*regexp.Regexp{
		regexp.MustCompile(`^postfix/lmtp: ` + id + `: to=<alice@example\.com>, relay=` + relay +
			`, delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=2\.0\.0, status=sent \(250 2\.0\.0 <alice@example\.com> \S+ Saved\)$`),
		regexp.MustCompile(`^postfix/lmtp: ` + id + `: to=<nobody@example\.com>, relay=` + relay +
			`, delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=5\.1\.1, status=bounced \(host ` + relay +
			` said: 550 5\.1\.1 <nobody@example\.com> User doesn't exist: nobody@example\.com \(in reply to RCPT TO command\)\)$`),
	}
	deadline := time.Now().Add(30 * time.Second)
	var lines []string
	for {
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
		log.Flush(fctx)
		fcancel()
		lines = sink.Lines(func(r maillog.Record) string { return r.Tag + ": " + maillogtest.Text(r) })
		if matchAll(lines, wants) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lines not seen:\n%s", strings.Join(lines, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	msgs, err := dv.Messages("alice@example.com")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("alice has %d messages (%v)", len(msgs), err)
	}
	if got := string(dovecot.Body(msgs[0])); got != strings.ReplaceAll(content, "\r\n", "\n") {
		t.Errorf("stored %q", got)
	}
}

func matchAll(lines []string, wants []*regexp.Regexp) bool {
	for _, rx := range wants {
		found := false
		for _, l := range lines {
			if rx.MatchString(l) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
