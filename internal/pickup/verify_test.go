package pickup

import (
	"testing"

	"moat/internal/maildrop"
	"moat/internal/queue"
)

// TestVerifyFlag: a sendmail -bv file (no content) is queued with
// FlagVerify, which makes the queue manager report instead of deliver;
// ordinary mail is not.
func TestVerifyFlag(t *testing.T) {
	f := newFixture(t, "")
	f.submit(t, &maildrop.Envelope{Sender: "joe", Verify: true, Recipients: []string{"amy", "nosuch"}}, "")
	if n, err := f.p.Scan(); err != nil || n != 1 {
		t.Fatalf("Scan = %d, %v", n, err)
	}
	env, _ := f.only(t)
	if env.Flags&queue.FlagVerify == 0 || len(env.Recipients) != 2 {
		t.Fatalf("envelope %+v", env)
	}
	ids, _ := f.q.List(queue.Incoming)
	if err := f.q.Remove(queue.Incoming, ids[0]); err != nil {
		t.Fatal(err)
	}
	f.submit(t, &maildrop.Envelope{Sender: "joe", Recipients: []string{"amy"}}, "Subject: x\r\n\r\nx\r\n")
	if n, err := f.p.Scan(); err != nil || n != 1 {
		t.Fatalf("Scan = %d, %v", n, err)
	}
	if env, _ := f.only(t); env.Flags&queue.FlagVerify != 0 {
		t.Fatalf("ordinary mail flagged: %+v", env)
	}
}
