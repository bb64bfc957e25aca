package queue

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMoveRemoveStat(t *testing.T) {
	q := newQueue(t, Options{})
	a := commit(t, q, testEnvelope(), "a\r\n")
	b := commit(t, q, testEnvelope(), "bb\r\n")
	if err := q.Move(a, Incoming, Active); err != nil {
		t.Fatal(err)
	}
	in, err := q.Stat(Active, a)
	if err != nil {
		t.Fatal(err)
	}
	if !in.Active || in.Held || in.Size != 3 || in.Sender != "alice@example.org" || len(in.Recipients) != 3 {
		t.Errorf("%+v", in)
	}
	if err := q.Move(a, Active, Deferred); err != nil {
		t.Fatal(err)
	}
	if err := q.Move(b, Incoming, Hold); err != nil {
		t.Fatal(err)
	}
	// A move never replaces a message.
	if err := os.Link(filepath.Join(q.Dir(), Hold, b), filepath.Join(q.Dir(), Deferred, b)); err != nil {
		t.Fatal(err)
	}
	if err := q.Move(b, Hold, Deferred); err == nil {
		t.Error("move replaced an existing file")
	}
	os.Remove(filepath.Join(q.Dir(), Deferred, b))
	if err := q.Move(a, Deferred, Incoming); err != nil {
		t.Fatal(err)
	}
	if err := q.Remove(Incoming, a); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Stat(Incoming, a); err == nil {
		t.Error("removed message still there")
	}
	if _, err := q.Open("nonesuch", b); err == nil {
		t.Error("unknown queue accepted")
	}
	if _, err := q.Open(Hold, "../"+b); err == nil {
		t.Error("path in ID accepted")
	}
}

func TestRequeueActive(t *testing.T) {
	q := newQueue(t, Options{})
	var ids []string
	for i := 0; i < 3; i++ {
		id := commit(t, q, testEnvelope(), "x")
		ids = append(ids, id)
		if err := q.Move(id, Incoming, Active); err != nil {
			t.Fatal(err)
		}
	}
	n, err := q.RequeueActive()
	if err != nil || n != 3 {
		t.Fatalf("RequeueActive = %d, %v", n, err)
	}
	got, _ := q.List(Incoming)
	if strings.Join(got, " ") != strings.Join(ids, " ") {
		t.Errorf("incoming %v, want %v in order", got, ids)
	}
}

func TestUpdateRecipients(t *testing.T) {
	q := newQueue(t, Options{})
	id := commit(t, q, testEnvelope(), "x\r\n")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// A replayable record (not fsynced at once) reads back like any other.
	must(q.UpdateRecipients(Incoming, id, []RecipientUpdate{{Index: 0, State: RcptDelivered, Replayable: true}}))
	must(q.UpdateRecipients(Incoming, id, []RecipientUpdate{
		{Index: 1, State: RcptDeferred, Reason: "connect to mx.example.net[192.0.2.9]:25: Connection timed out"},
	}))
	in, err := q.Stat(Incoming, id)
	must(err)
	if len(in.Recipients) != 2 || in.Recipients[0].Address != "carol@example.net" ||
		!strings.Contains(in.Recipients[0].Reason, "timed out") {
		t.Fatalf("after update: %+v", in.Recipients)
	}

	// A crash in the middle of an append leaves a torn record: readers
	// ignore it, and the next update cuts it off.
	p := filepath.Join(q.Dir(), Incoming, id)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	must(err)
	torn := stateRecord(2, RcptDelivered, "")
	f.Write(torn[:len(torn)-2])
	f.Close()
	in, err = q.Stat(Incoming, id)
	must(err)
	if len(in.Recipients) != 2 {
		t.Fatalf("torn record applied: %+v", in.Recipients)
	}
	must(q.UpdateRecipients(Incoming, id, []RecipientUpdate{
		{Index: 2, State: RcptBounced, Reason: "550 5.1.1 no such user"},
		// A final state stays final.
		{Index: 0, State: RcptDeferred, Reason: "late"},
	}))
	m, err := q.Open(Incoming, id)
	must(err)
	defer m.Close()
	rs := m.Envelope.Recipients
	if rs[0].State != RcptDelivered || rs[1].State != RcptDeferred || rs[2].State != RcptBounced {
		t.Errorf("states %v %v %v", rs[0].State, rs[1].State, rs[2].State)
	}
	if m.stateEnd != m.fileSize {
		t.Errorf("torn tail not truncated: log ends at %d, file at %d", m.stateEnd, m.fileSize)
	}
	if err := m.Verify(); err != nil {
		t.Errorf("state log damaged the content: %v", err)
	}

	for _, bad := range []RecipientUpdate{{Index: 3, State: RcptDelivered}, {Index: -1, State: RcptDelivered},
		{Index: 0, State: RcptPending}, {Index: 0, State: 9}, {Index: 0, State: RcptDeferred, Reason: "a\nb"}} {
		if err := q.UpdateRecipients(Incoming, id, []RecipientUpdate{bad}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestDamageDetected(t *testing.T) {
	q := newQueue(t, Options{})
	content := "Subject: x\r\n\r\nbody\r\n"
	id := commit(t, q, testEnvelope(), content)
	p := filepath.Join(q.Dir(), Incoming, id)
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// Flip every byte in turn: each must be caught by Open or by reading
	// the content to its end.
	for i := range orig {
		data := bytes.Clone(orig)
		data[i] ^= 0x20
		env, err := ReadFile(bytes.NewReader(data), int64(len(data)))
		if err == nil {
			t.Errorf("byte %d flipped: accepted %+v", i, env)
		}
	}
	// Every truncation too: a half-written file is never accepted.
	for n := 0; n < len(orig); n++ {
		if _, err := ReadFile(bytes.NewReader(orig[:n]), int64(n)); err == nil {
			t.Errorf("truncated to %d bytes: accepted", n)
		}
	}
	// Content damage shows when reading, not when opening (mailq stays
	// cheap), and the reader returns the error instead of EOF.
	data := bytes.Clone(orig)
	data[contentStart+3] ^= 1
	os.WriteFile(p, data, 0o600)
	m, err := q.Open(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := io.ReadAll(m.Content()); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("content damage: %v", err)
	}
}

func TestRecover(t *testing.T) {
	var logs []string
	q := newQueue(t, Options{Logf: func(f string, a ...any) { logs = append(logs, f) }})
	good := commit(t, q, testEnvelope(), "good\r\n")
	deferredGood := commit(t, q, testEnvelope(), "deferred\r\n")
	if err := q.Move(deferredGood, Incoming, Deferred); err != nil {
		t.Fatal(err)
	}
	// A writer that died before Commit.
	w, err := q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("half of a message")
	w.bw.Flush()
	w.f.Close()
	// A complete file damaged afterwards, and one cut short.
	bad := commit(t, q, testEnvelope(), "will be damaged\r\n")
	bp := filepath.Join(q.Dir(), Incoming, bad)
	data, _ := os.ReadFile(bp)
	os.WriteFile(bp, data[:len(data)-3], 0o600)
	stray := filepath.Join(q.Dir(), Hold, "README")
	os.WriteFile(stray, []byte("hi"), 0o600)

	st, err := q.Recover(true)
	if err != nil {
		t.Fatal(err)
	}
	if st.TempRemoved != 1 || st.Corrupt != 2 || st.Kept != 2 {
		t.Errorf("stats %+v", st)
	}
	if _, err := q.Stat(Incoming, good); err != nil {
		t.Error(err)
	}
	if _, err := q.Stat(Deferred, deferredGood); err != nil {
		t.Error(err)
	}
	ents, _ := os.ReadDir(filepath.Join(q.Dir(), Corrupt))
	if len(ents) != 2 {
		t.Errorf("corrupt/ holds %d files", len(ents))
	}
	if len(logs) != 3 {
		t.Errorf("logged %d lines, want 3", len(logs))
	}
	ids, _ := q.List(Incoming)
	if len(ids) != 1 {
		t.Errorf("incoming: %v", ids)
	}
}

func TestFindUnsettled(t *testing.T) {
	q := newQueue(t, Options{})
	id := commit(t, q, testEnvelope(), "x")
	if err := q.Move(id, Incoming, Deferred); err != nil {
		t.Fatal(err)
	}
	if name, err := q.Find(id); err != nil || name != Deferred {
		t.Errorf("Find = %q, %v", name, err)
	}
	if _, err := q.Find(MakeID(time.Now(), 1)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Find of a missing message: %v, want fs.ErrNotExist", err)
	}
	// Moving a message that is not in the source queue is "not found",
	// even when the target holds it.
	if err := q.Move(id, Hold, Deferred); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Move from the wrong queue: %v, want fs.ErrNotExist", err)
	}
	if err := q.UpdateRecipients(Deferred, id, []RecipientUpdate{{Index: 0, State: RcptDelivered}, {Index: 2, State: RcptBounced}}); err != nil {
		t.Fatal(err)
	}
	m, err := q.Open(Deferred, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Envelope.Unsettled(); len(got) != 1 || got[0] != 1 {
		t.Errorf("Unsettled = %v", got)
	}
}
