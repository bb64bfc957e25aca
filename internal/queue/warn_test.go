package queue

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMarkWarned: the delay-warning mark survives a reopen, sits among
// recipient records without hiding them, and a torn record after it is
// cut off by the next append.
func TestMarkWarned(t *testing.T) {
	q := newQueue(t, Options{})
	id := commit(t, q, testEnvelope(), "Subject: x\r\n\r\nbody\r\n")
	m, err := q.Open(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Envelope.Warned.IsZero() {
		t.Fatalf("a new message is warned: %v", m.Envelope.Warned)
	}
	m.Close()
	at := time.UnixMicro(time.Now().UnixMicro())
	if err := q.UpdateRecipients(Incoming, id, []RecipientUpdate{{Index: 0, State: RcptDeferred, Reason: "4.4.1 later"}}); err != nil {
		t.Fatal(err)
	}
	if err := q.MarkWarned(Incoming, id, at); err != nil {
		t.Fatal(err)
	}
	// A torn tail after the mark (a crash mid-append) is cut off.
	p := filepath.Join(q.Dir(), Incoming, id)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{'s', 9, 1})
	f.Close()
	if err := q.UpdateRecipients(Incoming, id, []RecipientUpdate{{Index: 1, State: RcptDelivered}}); err != nil {
		t.Fatal(err)
	}
	m, err = q.Open(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e := m.Envelope
	if !e.Warned.Equal(at) {
		t.Errorf("Warned %v, want %v", e.Warned, at)
	}
	if e.Recipients[0].State != RcptDeferred || e.Recipients[1].State != RcptDelivered {
		t.Errorf("recipient states %v %v", e.Recipients[0].State, e.Recipients[1].State)
	}
	// A damaged 'w' record ends the log there, as a torn 's' does.
	data, _ := os.ReadFile(p)
	// Find the record itself: a lone 'w' byte may also occur in a
	// later record's payload or checksum.
	i := bytes.Index(data, warnRecord(at))
	if i < 0 {
		t.Fatalf("no 'w' record for %v in the file", at)
	}
	bad := bytes.Clone(data)
	bad[i+2] ^= 0xff
	env, err := ReadFile(bytes.NewReader(bad), int64(len(bad)))
	if err != nil {
		t.Fatal(err)
	}
	if !env.Warned.IsZero() || env.Recipients[1].State == RcptDelivered {
		t.Errorf("records past a damaged mark were read: %+v", env)
	}
}

// FuzzWarnRecord feeds a queue file with a delay-warning mark followed by
// arbitrary state-log bytes to the reader: never a panic, and the mark,
// once read, is a time the encoder could have written.
func FuzzWarnRecord(f *testing.F) {
	q, err := Open(filepath.Join(f.TempDir(), "q"), Options{Create: true})
	if err != nil {
		f.Fatal(err)
	}
	id := commit(f, q, testEnvelope(), "Subject: x\r\n\r\nbody\r\n")
	base, err := os.ReadFile(filepath.Join(q.Dir(), Incoming, id))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(warnRecord(time.Unix(1700000000, 0)))
	f.Add(append(warnRecord(time.Unix(0, 0)), stateRecord(2, RcptBounced, "5.1.1 no")...))
	f.Add([]byte{warnType, 0})
	f.Add([]byte{warnType, 10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, tail []byte) {
		data := append(bytes.Clone(base), tail...)
		env, err := ReadFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("the committed part is intact, yet: %v", err)
		}
		if !env.Warned.IsZero() && (env.Warned.UnixMicro() < 0 || env.Warned.UnixMicro() > 1<<62) {
			t.Fatalf("Warned out of range: %v", env.Warned)
		}
		for _, r := range env.Recipients {
			if r.State > RcptDeferred {
				t.Fatalf("bad recipient %+v", r)
			}
		}
	})
}
