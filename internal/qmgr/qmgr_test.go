package qmgr

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/delivery/maildir"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
	"moat/internal/postqueue"
	"moat/internal/queue"
	"moat/internal/queue/queuetest"
)

// logBuf collects log records for the assertions, read as
// "postfix/daemon[PID]: text" with the real PID masked.
type logBuf struct{ maillogtest.Sink }

func (b *logBuf) all() []string {
	return b.Lines(func(r maillog.Record) string { return r.Tag + "[PID]: " + maillogtest.Text(r) })
}

// env is one test's queue, configuration, mail spool and running manager.
type env struct {
	t     testing.TB
	fix   *queuetest.Fixture
	cfg   *config.Config
	spool string
	log   *maillog.Logger
	buf   *logBuf
	m     *Manager
	stop  func()
	// agents are the delivery agents the manager gets (Deps.Agents).
	agents map[string]AgentFactory
}

// newEnv writes main.cf (mydestination mx.test, Maildir spool, plus extra
// lines) and creates the manager, not yet running.
func newEnv(t testing.TB, extra string) *env {
	t.Helper()
	return newEnvWith(t, extra, "", nil)
}

// newEnvWith is newEnv with a master.cf (none when empty) and delivery
// agents.
func newEnvWith(t testing.TB, extra, masterCF string, agents map[string]AgentFactory) *env {
	t.Helper()
	spool := filepath.Join(t.TempDir(), "mail") + "/"
	mainCF := "myhostname = mx.test\nmydestination = mx.test, localhost\n" +
		"mail_spool_directory = " + spool + "\n" + extra
	fix := queuetest.New(t, mainCF)
	cfg, err := config.Load(fix.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	buf := &logBuf{}
	log := maillog.New(maillog.Options{Sink: buf, Fallback: buf, SyslogName: "postfix", Daemon: "qmgr", PID: 1})
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	if masterCF != "" {
		if err := os.WriteFile(filepath.Join(fix.ConfigDir, "master.cf"), []byte(masterCF), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, fix: fix, cfg: cfg, spool: spool, log: log, buf: buf, agents: testAgents(agents)}
	e.m = e.newManager()
	return e
}

func (e *env) newManager() *Manager {
	e.t.Helper()
	m, err := New(Deps{Config: e.cfg, Log: e.log, Queue: e.fix.Queue, Agents: e.agents})
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// restart stops the running manager and starts a new one on the same
// queue, as a restart of moat does.
func (e *env) restart() {
	e.stop()
	e.m = e.newManager()
	e.start()
}

// start runs the manager until the test ends (or stop is called), and
// checks that Run returns promptly once canceled.
func (e *env) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.m.Run(ctx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				e.t.Errorf("Run did not return after cancel")
			}
		})
	}
	e.t.Cleanup(e.stop)
}

// put commits a message from sender to rcpts and returns its ID.
func (e *env) put(sender string, rcpts ...string) string {
	e.t.Helper()
	return e.putContent(sender, "Subject: test\r\nMessage-ID: <t@example>\r\n\r\nhello\r\n.dot line\r\n", rcpts...)
}

// putContent is put with the given content (CRLF line ends).
func (e *env) putContent(sender, content string, rcpts ...string) string {
	e.t.Helper()
	return e.putWith(sender, content, nil, rcpts...)
}

// putWith is putContent with a last say on the envelope (flags, a content
// filter) before the commit.
func (e *env) putWith(sender, content string, edit func(*queue.Envelope), rcpts ...string) string {
	e.t.Helper()
	w, err := e.fix.Queue.NewMessage()
	if err != nil {
		e.t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.WriteString(content); err != nil {
		e.t.Fatal(err)
	}
	w.Envelope.Sender = sender
	for _, r := range rcpts {
		w.Envelope.Recipients = append(w.Envelope.Recipients, queue.Recipient{Address: r})
	}
	if edit != nil {
		edit(&w.Envelope)
	}
	id, err := w.Commit()
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// waitFor polls cond for up to limit.
func (e *env) waitFor(what string, limit time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			e.logs()
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) count(user string) int {
	n, err := maildir.Count(filepath.Join(e.spool, user))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) inQueue(name, id string) bool {
	ids, err := e.fix.Queue.List(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return slices.Contains(ids, id)
}

func (e *env) gone(id string) bool {
	_, err := e.fix.Queue.Find(id)
	return err != nil
}

// logs flushes the logger and returns every record so far.
func (e *env) logs() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.log.Flush(ctx); err != nil {
		e.t.Fatal(err)
	}
	lines := e.buf.all()
	for _, l := range lines {
		e.t.Log(l)
	}
	return lines
}

// wantLog fails unless some record matches the regular expression.
func (e *env) wantLog(re string) {
	e.t.Helper()
	rx := regexp.MustCompile(re)
	for _, l := range e.logs() {
		if rx.MatchString(l) {
			return
		}
	}
	e.t.Errorf("no log record matches %s", re)
}

func (e *env) readOne(user string) string {
	e.t.Helper()
	dir := filepath.Join(e.spool, user, "new")
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 {
		e.t.Fatalf("%s: want one message, got %d (%v)", dir, len(ents), err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ents[0].Name()))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

const delaysRE = `delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/0/[0-9.]+, `

func TestLocalMaildirDeliveredAndRemoved(t *testing.T) {
	e := newEnv(t, "recipient_delimiter = +\n")
	id := e.put("sender@example.org", "Alice+Tag@MX.test")
	e.start()
	// "removed" is logged right after the removal: wait for the record.
	removed := regexp.MustCompile(`^postfix/qmgr\[PID\]: ` + id + `: removed$`)
	e.waitFor("delivery", 5*time.Second, func() bool {
		return e.count("alice") == 1 && slices.ContainsFunc(e.buf.all(), removed.MatchString)
	})
	msg := e.readOne("alice")
	for _, want := range []string{
		"Return-Path: <sender@example.org>\n",
		"X-Original-To: Alice+Tag@MX.test\n",
		"Delivered-To: alice+tag@mx.test\n",
		"Subject: test\n",
		"\n\nhello\n.dot line\n",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("delivered message lacks %q:\n%s", want, msg)
		}
	}
	e.wantLog(`^postfix/qmgr\[PID\]: ` + id + `: from=<sender@example.org>, size=\d+, nrcpt=1 \(queue active\)$`)
	e.wantLog(`^postfix/local\[PID\]: ` + id + `: to=<Alice\+Tag@MX.test>, relay=local, ` + delaysRE +
		`dsn=2.0.0, status=sent \(delivered to maildir\)$`)
}

func TestLocalDeliveredRemoteDeferred(t *testing.T) {
	e := newEnv(t, "")
	id := e.put("sender@example.org", "bob@mx.test", "carol@remote.example")
	e.start()
	e.waitFor("deferral", 5*time.Second, func() bool { return e.inQueue(queue.Deferred, id) })
	if n := e.count("bob"); n != 1 {
		t.Errorf("bob has %d messages, want 1", n)
	}
	info, err := e.fix.Queue.Stat(queue.Deferred, id)
	if err != nil {
		t.Fatal(err)
	}
	reason := "delivery via smtp is not available yet in this version of moat"
	if len(info.Recipients) != 1 || info.Recipients[0].Address != "carol@remote.example" ||
		info.Recipients[0].Reason != reason {
		t.Errorf("mailq would show %+v, want carol deferred with %q", info.Recipients, reason)
	}
	e.wantLog(`^postfix/local\[PID\]: ` + id + `: to=<bob@mx.test>, relay=local, .*status=sent`)
	e.wantLog(`^postfix/qmgr\[PID\]: ` + id + `: to=<carol@remote.example>, relay=none, ` +
		`delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/0/0, dsn=4.3.0, status=deferred \(` + reason + `\)$`)
	// A second run retries carol only: bob is not delivered twice.
	e.restart()
	e.waitFor("retry", 5*time.Second, func() bool {
		return strings.Count(strings.Join(e.buf.all(), "\n"), "to=<carol@remote.example>") >= 2 &&
			e.inQueue(queue.Deferred, id)
	})
	if n := e.count("bob"); n != 1 {
		t.Errorf("after the retry bob has %d messages, want 1", n)
	}
}

func TestDiscardTransport(t *testing.T) {
	e := newEnv(t, "default_transport = discard\n")
	id := e.put("", "x@remote.example", "y@other.example")
	e.start()
	e.waitFor("removal", 5*time.Second, func() bool { return e.gone(id) })
	e.wantLog(`^postfix/discard\[PID\]: ` + id + `: to=<x@remote.example>, relay=none, ` + delaysRE +
		`dsn=2.0.0, status=sent \(remote.example\)$`)
	e.wantLog(`^postfix/discard\[PID\]: ` + id + `: to=<y@other.example>, .*status=sent \(other.example\)$`)
	e.wantLog(`^postfix/qmgr\[PID\]: ` + id + `: from=<>, size=\d+, nrcpt=2 \(queue active\)$`)
}

func TestDiscardWithReasonAndErrorTransport(t *testing.T) {
	e := newEnv(t, "default_transport = error:5.7.1 we do not relay\nlocal_transport = discard:silently\n")
	id := e.put("", "x@remote.example", "me@mx.test")
	e.start()
	e.waitFor("removal", 5*time.Second, func() bool { return e.gone(id) })
	e.wantLog(`^postfix/error\[PID\]: ` + id + `: to=<x@remote.example>, relay=none, .*dsn=5.7.1, ` +
		`status=bounced \(we do not relay\)$`)
	e.wantLog(`^postfix/discard\[PID\]: ` + id + `: to=<me@mx.test>, .*status=sent \(silently\)$`)
}

func TestUnsafeUserBouncedWithNotice(t *testing.T) {
	e := newEnv(t, "")
	bad := []string{"../etc@mx.test", "-rf@mx.test", "..@mx.test", "a\x01b@mx.test", "@mx.test"}
	id := e.put("bob@mx.test", bad...)
	e.start()
	e.waitFor("removal and notice", 5*time.Second, func() bool { return e.gone(id) && e.count("bob") == 1 })
	for _, r := range bad {
		local, _ := splitAddress(r)
		e.wantLog(`^postfix/local\[PID\]: ` + id + `: to=<` + regexp.QuoteMeta(maillog.Printable(r, false)) +
			`>, relay=local, .*dsn=5.1.1, status=bounced \(unknown user: "` +
			regexp.QuoteMeta(maillog.Printable(local, false)) + `"\)$`)
	}
	e.wantLog(`^postfix/bounce\[PID\]: ` + id + `: sender non-delivery notification: \w+$`)
	notice := e.readOne("bob")
	for _, want := range []string{"Return-Path: <>\n", "From: MAILER-DAEMON@mx.test", "Subject: Undelivered Mail",
		"<-rf@mx.test>: unknown user: \"-rf\"", "X-Postfix-Queue-ID: " + id} {
		if !strings.Contains(notice, want) {
			t.Errorf("notice lacks %q:\n%s", want, notice)
		}
	}
	// Nothing was created outside the spool.
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Clean(e.spool)), "etc")); err == nil {
		t.Error("a Maildir escaped the spool")
	}
}

func TestBounceToNullSenderHasNoNotice(t *testing.T) {
	e := newEnv(t, "")
	id := e.put("", "../x@mx.test")
	e.start()
	e.waitFor("removal", 5*time.Second, func() bool { return e.gone(id) })
	for _, l := range e.logs() {
		if strings.Contains(l, "non-delivery notification") {
			t.Errorf("a bounce of a null-sender message made a notice: %s", l)
		}
	}
}

func TestRestartAfterCrashDoesNotDeliverTwice(t *testing.T) {
	e := newEnv(t, "")
	id := e.put("s@example.org", "dave@mx.test", "erin@mx.test")
	// The crash: the previous run moved the message to active/, delivered
	// dave and recorded it, then died before erin.
	if err := e.fix.Queue.Move(id, queue.Incoming, queue.Active); err != nil {
		t.Fatal(err)
	}
	if err := e.fix.Queue.UpdateRecipients(queue.Active, id,
		[]queue.RecipientUpdate{{Index: 0, State: queue.RcptDelivered}}); err != nil {
		t.Fatal(err)
	}
	e.start()
	e.waitFor("delivery", 5*time.Second, func() bool { return e.count("erin") == 1 && e.gone(id) })
	if n := e.count("dave"); n != 0 {
		t.Errorf("dave got %d messages after the restart, want 0 (already delivered)", n)
	}
	e.wantLog(`: from=<s@example.org>, size=\d+, nrcpt=1 \(queue active\)$`)
}

func TestWakeLatency(t *testing.T) {
	e := newEnv(t, "")
	e.start()
	time.Sleep(100 * time.Millisecond) // past the start-up scans
	for i := range 3 {
		id := e.put("s@example.org", "frank@mx.test")
		begin := time.Now()
		e.m.Wake()
		e.waitFor("delivery after Wake", 5*time.Second, func() bool { return e.count("frank") == i+1 && e.gone(id) })
		if d := time.Since(begin); d > time.Second {
			t.Errorf("message %d delivered %v after Wake, want under 1s", i, d)
		}
	}
}
func TestDeferredRetriedAfterQueueRunDelay(t *testing.T) {
	e := newEnv(t, "queue_run_delay = 1s\nminimal_backoff_time = 1s\n")
	// A file where hank's Maildir should be: delivery fails temporarily.
	if err := os.MkdirAll(e.spool, 0o700); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(e.spool, "hank")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	id := e.put("s@example.org", "hank@mx.test")
	e.start()
	e.waitFor("deferral", 5*time.Second, func() bool { return e.inQueue(queue.Deferred, id) })
	e.wantLog(`^postfix/local\[PID\]: ` + id + `: to=<hank@mx.test>, relay=local, .*status=deferred \(`)
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	e.waitFor("retry", 5*time.Second, func() bool { return e.count("hank") == 1 && e.gone(id) })
}

func TestNewRejectsBadSettings(t *testing.T) {
	e := newEnv(t, "")
	if _, err := New(Deps{Config: e.cfg, Queue: e.fix.Queue}); err == nil {
		t.Error("New without a Log succeeded")
	}
}

func TestShutdownLeavesNothingActive(t *testing.T) {
	e := newEnv(t, "")
	var ids []string
	for range 20 {
		ids = append(ids, e.put("s@example.org", "ivan@mx.test", "judy@mx.test"))
	}
	e.start()
	e.waitFor("some delivery", 5*time.Second, func() bool { return e.count("ivan") > 0 })
	e.stop()
	active, err := e.fix.Queue.List(queue.Active)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 0 {
		t.Errorf("after Run returned, active/ holds %v", active)
	}
	// Every recipient is delivered exactly once, now or after a restart.
	e.restart()
	e.waitFor("the rest", 10*time.Second, func() bool {
		for _, id := range ids {
			if !e.gone(id) {
				return false
			}
		}
		return true
	})
	if a, b := e.count("ivan"), e.count("judy"); a != 20 || b != 20 {
		t.Errorf("ivan has %d, judy %d messages; want 20 each", a, b)
	}
}

func TestBackoffThenFlush(t *testing.T) {
	e := newEnv(t, "queue_run_delay = 1s\nminimal_backoff_time = 1h\n")
	if err := os.MkdirAll(e.spool, 0o700); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(e.spool, "kate")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	id := e.put("s@example.org", "kate@mx.test")
	e.start()
	e.waitFor("deferral", 5*time.Second, func() bool { return e.inQueue(queue.Deferred, id) })
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	// Two queue runs pass; the message's back-off (an hour) has not.
	time.Sleep(2500 * time.Millisecond)
	if !e.inQueue(queue.Deferred, id) || e.count("kate") != 0 {
		t.Fatalf("a deferred message was retried before minimal_backoff_time (in deferred/: %v, kate has %d):\n%s",
			e.inQueue(queue.Deferred, id), e.count("kate"), strings.Join(e.logs(), "\n"))
	}
	// public/ is made by `postfix start`, not by queue.Open.
	if err := os.Mkdir(filepath.Join(e.fix.QueueDir, postqueue.TriggerDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := postqueue.WriteRequest(e.fix.QueueDir, postqueue.Request{Kind: postqueue.FlushAll}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("delivery after postqueue -f", 2*scanInterval+time.Second, func() bool {
		return e.count("kate") == 1 && e.gone(id)
	})
}

// The address class chooses the transport (ADDRESS_CLASS_README); a
// transport without an agent defers, never bounces; an address in a
// virtual alias domain that cleanup did not rewrite is unknown (error(8)).
func TestAddressClassesChooseTransport(t *testing.T) {
	e := newEnv(t, "relay_domains = relay.example\nvirtual_mailbox_domains = vmail.example\n"+
		"virtual_alias_domains = valias.example\nrelay_transport = discard:relayed\n")
	id := e.put("s@example.org", "a@relay.example", "b@vmail.example", "c@valias.example", "d@MX.TEST.")
	e.start()
	e.waitFor("deferral", 5*time.Second, func() bool { return e.inQueue(queue.Deferred, id) })
	e.wantLog(`^postfix/discard\[PID\]: ` + id + `: to=<a@relay.example>, .*status=sent \(relayed\)$`)
	e.wantLog(`^postfix/qmgr\[PID\]: ` + id + `: to=<b@vmail.example>, relay=none, .*dsn=4.3.0, ` +
		`status=deferred \(delivery via virtual is not available yet in this version of moat\)$`)
	e.wantLog(`^postfix/error\[PID\]: ` + id + `: to=<c@valias.example>, relay=none, .*dsn=5.1.1, ` +
		`status=bounced \(User unknown in virtual alias table\)$`)
	e.wantLog(`^postfix/local\[PID\]: ` + id + `: to=<d@MX.TEST.>, relay=local, .*status=sent \(delivered to maildir\)$`)
	if n := e.count("d"); n != 1 {
		t.Errorf("d has %d messages, want 1", n)
	}
}

// A message over mailbox_size_limit bounces with 5.2.2 (local(8)), and the
// local sender gets the notice, which returns only the headers of a
// message over bounce_size_limit and so is small enough to arrive.
func TestMailboxSizeLimitBounces(t *testing.T) {
	e := newEnv(t, "mailbox_size_limit = 2000\nmessage_size_limit = 2000\nbounce_size_limit = 1000\n")
	w, err := e.fix.Queue.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.WriteString("Subject: big\r\n\r\n" + strings.Repeat("x\r\n", 1000)); err != nil {
		t.Fatal(err)
	}
	w.Envelope.Sender = "pat@mx.test"
	w.Envelope.Recipients = []queue.Recipient{{Address: "quinn@mx.test"}}
	id, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	e.start()
	e.waitFor("bounce notice", 5*time.Second, func() bool { return e.gone(id) && e.count("pat") == 1 })
	if n := e.count("quinn"); n != 0 {
		t.Errorf("quinn has %d messages, want 0", n)
	}
	e.wantLog(`^postfix/local\[PID\]: ` + id + `: to=<quinn@mx.test>, relay=local, .*dsn=5.2.2, status=bounced \(`)
	if notice := e.readOne("pat"); !strings.Contains(notice, "<quinn@mx.test>: ") {
		t.Errorf("notice does not name the recipient:\n%s", notice)
	}
}

// The hold queue is the admin's: the queue manager never takes mail from
// it (postsuper -H releases it to deferred/ first).
func TestHoldQueueUntouched(t *testing.T) {
	e := newEnv(t, "queue_run_delay = 1s\n")
	w, err := e.fix.Queue.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, err := w.WriteString("Subject: held\r\n\r\nx\r\n"); err != nil {
		t.Fatal(err)
	}
	w.Envelope.Sender = "s@example.org"
	w.Envelope.Recipients = []queue.Recipient{{Address: "uma@mx.test"}}
	w.Envelope.Flags = queue.FlagHold
	id, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	e.start()
	e.m.Wake()
	time.Sleep(1500 * time.Millisecond) // a Wake and a queue run
	if !e.inQueue(queue.Hold, id) || e.count("uma") != 0 {
		t.Error("a held message was delivered or moved")
	}
}

// due keeps the back-off time a worker has set for a message it is still
// moving to deferred/ (the race TestBackoffThenFlush once lost), and
// forgets those of messages that are gone.
func TestDueKeepsInflightBackoff(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &Manager{now: func() time.Time { return now },
		inflight: map[string]bool{"moving": true},
		retryAt: map[string]time.Time{"moving": now.Add(time.Hour), "arrived": now.Add(time.Hour),
			"gone": now.Add(-time.Second), "waiting": now.Add(time.Hour), "ripe": now.Add(-time.Second)}}
	got := m.due([]string{"waiting", "ripe", "new"}, false)
	if !slices.Equal(got, []string{"ripe", "new"}) {
		t.Errorf("due = %v, want [ripe new]", got)
	}
	if _, ok := m.retryAt["moving"]; !ok {
		t.Error("the back-off of a message a worker holds was forgotten")
	}
	// "arrived" reached deferred/ after the listing (its worker set the
	// time, moved it and let go in between): its back-off must survive,
	// or the next run retries it at once.
	if _, ok := m.retryAt["arrived"]; !ok {
		t.Error("the back-off of a message that reached deferred/ after the listing was forgotten")
	}
	if _, ok := m.retryAt["gone"]; ok {
		t.Error("the passed back-off of a message no longer queued was kept")
	}
	if got := m.due([]string{"waiting"}, true); !slices.Equal(got, []string{"waiting"}) {
		t.Errorf("due(all) = %v, want [waiting]", got)
	}
}
