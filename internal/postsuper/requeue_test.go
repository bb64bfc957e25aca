package postsuper

import (
	"fmt"
	"io"
	"testing"
	"time"

	"moat/internal/queue"
	"moat/internal/queue/queuetest"
)

// TestRequeueRewrites checks postsuper -r against postsuper(1): the
// message goes into a new queue file through cleanup's address rewriting
// (a canonical_maps entry added after it was queued applies), keeps its
// arrival time, delay-warning mark, content and DSN details, loses the
// recipients already delivered, and takes main.cf's content_filter as a
// new local submission.
func TestRequeueRewrites(t *testing.T) {
	qf := queuetest.New(t, "canonical_maps = inline:{ b@example.com=c@example.org }\ncontent_filter = scan:[127.0.0.1]:10025\n")
	f := &fixture{cfg: qf.ConfigDir, q: qf.Queue}
	w, err := f.q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	const content = "Subject: x\r\n\r\nbody\r\n"
	w.WriteString(content)
	w.Envelope.Sender = "a@example.com"
	w.Envelope.EnvID = "env-1"
	w.Envelope.Recipients = []queue.Recipient{{Address: "b@example.com", ORCPT: "rfc822;b@example.com"}, {Address: "d@example.com"}}
	old, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.q.UpdateRecipients(queue.Incoming, old, []queue.RecipientUpdate{{Index: 1, State: queue.RcptDelivered}}); err != nil {
		t.Fatal(err)
	}
	warned := time.UnixMicro(1700000000123456)
	if err := f.q.MarkWarned(queue.Incoming, old, warned); err != nil {
		t.Fatal(err)
	}
	if err := f.q.Move(old, queue.Incoming, queue.Deferred); err != nil {
		t.Fatal(err)
	}
	before, err := f.q.Stat(queue.Deferred, old)
	if err != nil {
		t.Fatal(err)
	}
	code, errs := f.run(t, 0, "", "-r", "ALL", "deferred")
	if code != 0 || errs != "postsuper: Requeued: 1 message\n" {
		t.Fatalf("-r ALL deferred: %d %q", code, errs)
	}
	in := f.ids(t, queue.Incoming)
	if len(in) != 1 || in[0] == old || len(f.where(t)) != 1 {
		t.Fatalf("after -r: %v", f.where(t))
	}
	m, err := f.q.Open(queue.Incoming, in[0])
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e := m.Envelope
	got := fmt.Sprintf("%q %q %v %v %q %+v", e.Sender, e.EnvID, e.Arrival.Equal(before.Arrival), e.Warned.Equal(warned), e.Filter, e.Recipients)
	want := fmt.Sprintf("%q %q %v %v %q %+v", "a@example.com", "env-1", true, true, "scan:[127.0.0.1]:10025",
		[]queue.Recipient{{Address: "c@example.org", ORCPT: "rfc822;b@example.com", Orig: "b@example.com"}})
	if got != want {
		t.Errorf("requeued envelope\n got %s\nwant %s", got, want)
	}
	body, err := io.ReadAll(m.Content())
	if err != nil || string(body) != content {
		t.Errorf("content %q %v", body, err)
	}
	// A message no longer there is not counted.
	if code, errs := f.run(t, 0, "", "-r", old); code != 0 || errs != "" {
		t.Errorf("-r gone: %d %q", code, errs)
	}
}

// TestRequeueTableFailure checks that a requeue whose tables cannot be
// opened moves nothing.
func TestRequeueTableFailure(t *testing.T) {
	qf := queuetest.New(t, "canonical_maps = texthash:/nonexistent/canonical\n")
	f := &fixture{cfg: qf.ConfigDir, q: qf.Queue}
	a := f.add(t, queue.Deferred)
	code, errs := f.run(t, 0, "", "-r", a)
	if code != 1 {
		t.Errorf("-r with a missing table: %d %q", code, errs)
	}
	if got := fmt.Sprint(f.where(t)); got != fmt.Sprint([]string{"deferred:" + a}) {
		t.Errorf("after a failed requeue: %s", got)
	}
}
