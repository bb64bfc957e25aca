package queue

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMessageUpdates: records appended through one open message land
// after those another writer appended meanwhile (the file is parsed again
// for the end of its log), a torn tail written meanwhile is cut off, and
// a message opened read-only refuses to write.
func TestMessageUpdates(t *testing.T) {
	q := newQueue(t, Options{})
	env := testEnvelope()
	env.Recipients = append(env.Recipients, Recipient{Address: "third@example.net"})
	id := commit(t, q, env, "x\r\n")
	m, err := q.OpenForUpdate(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.UpdateRecipients([]RecipientUpdate{{Index: 0, State: RcptDelivered, Replayable: true}}); err != nil {
		t.Fatal(err)
	}
	// Another writer appends, then leaves a torn record.
	if err := q.UpdateRecipients(Incoming, id, []RecipientUpdate{{Index: 1, State: RcptDeferred, Reason: "later"}}); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(q.Dir(), Incoming, id), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := stateRecord(2, RcptDelivered, "")
	f.Write(torn[:len(torn)-2])
	f.Close()
	at := time.UnixMicro(1700000000_000000)
	if err := m.MarkWarned(at); err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateRecipients([]RecipientUpdate{{Index: 2, State: RcptBounced, Reason: "no such user"}}); err != nil {
		t.Fatal(err)
	}
	got, err := q.Open(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if got.stateEnd != got.fileSize {
		t.Errorf("state log ends at %d of %d bytes", got.stateEnd, got.fileSize)
	}
	rs := got.Envelope.Recipients
	if rs[0].State != RcptDelivered || rs[1].State != RcptDeferred || rs[1].Reason != "later" ||
		rs[2].State != RcptBounced || rs[2].Reason != "no such user" {
		t.Errorf("states after the updates: %+v", rs)
	}
	if !got.Envelope.Warned.Equal(at) {
		t.Errorf("warned %v, want %v", got.Envelope.Warned, at)
	}
	if err := got.UpdateRecipients([]RecipientUpdate{{Index: 0, State: RcptDelivered}}); err == nil {
		t.Error("a message opened read-only took an update")
	}
}

// TestCurrent: a message kept open is current until its file grows a
// record from another writer, is moved, or is deleted; its own updates
// keep it current.
func TestCurrent(t *testing.T) {
	q := newQueue(t, Options{})
	id := commit(t, q, testEnvelope(), "x\r\n")
	open := func() *Message {
		m, err := q.OpenForUpdate(Incoming, id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	m := open()
	if !q.Current(m) {
		t.Fatal("a message just opened is not current")
	}
	if err := m.UpdateRecipients([]RecipientUpdate{{Index: 0, State: RcptDeferred, Reason: "later"}}); err != nil {
		t.Fatal(err)
	}
	if !q.Current(m) || m.Envelope.Recipients[0].State != RcptDeferred || m.Envelope.Recipients[0].Reason != "later" {
		t.Errorf("after its own update: current %v, recipient %+v", q.Current(m), m.Envelope.Recipients[0])
	}
	if err := q.UpdateRecipients(Incoming, id, []RecipientUpdate{{Index: 1, State: RcptDelivered}}); err != nil {
		t.Fatal(err)
	}
	if q.Current(m) {
		t.Error("current after another writer's record")
	}
	m = open()
	if err := q.Move(id, Incoming, Hold); err != nil {
		t.Fatal(err)
	}
	if q.Current(m) {
		t.Error("current after a move to hold/")
	}
	if err := q.Move(id, Hold, Incoming); err != nil {
		t.Fatal(err)
	}
	m = open()
	if err := q.Remove(Incoming, id); err != nil {
		t.Fatal(err)
	}
	if q.Current(m) {
		t.Error("current after deletion")
	}
}
