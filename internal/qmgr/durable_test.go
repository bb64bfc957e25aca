package qmgr

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"moat/internal/delivery"
	"moat/internal/queue"
)

// TestResultCommit: a result's deferred commit (delivery.Result.Commit, a
// staged Maildir delivery's fsyncs and link) runs after the destination's
// slot is free and before the result is recorded; a failed one defers
// the recipient with its reason.
func TestResultCommit(t *testing.T) {
	rec := &recorder{}
	var committed atomic.Int32
	rec.answer = func(addr string) delivery.Result {
		ok := delivery.Result{State: queue.RcptDelivered, DSN: "2.0.0", Reason: "delivered to maildir", Relay: "local"}
		switch {
		case strings.HasPrefix(strings.ToLower(addr), "first@"):
			// Each holds its commit until both deliveries to the
			// recipient have begun: the second needs the one slot
			// (concurrency limit 1), so the first's must be free by
			// the time its commit runs.
			ok.Commit = func(ctx context.Context) error {
				deadline := time.Now().Add(5 * time.Second)
				for firsts(rec) < 2 {
					if time.Now().After(deadline) {
						return errors.New("the slot was still held during the commit")
					}
					time.Sleep(5 * time.Millisecond)
				}
				committed.Add(1)
				return nil
			}
		case strings.HasPrefix(addr, "bad@"):
			ok.Commit = func(context.Context) error {
				return &delivery.Error{DSN: "4.3.0", Text: "cannot sync maildir directory /m/new: Input/output error"}
			}
		}
		return ok
	}
	e := newEnvWith(t, "local_destination_concurrency_limit = 1\nlocal_destination_recipient_limit = 1\n", testMasterCF,
		map[string]AgentFactory{"local": rec.factory()})
	// With a recipient limit of 1 the destination is the recipient,
	// case-folded: first@ and FIRST@ share the one slot.
	a := e.put("s@example.org", "first@mx.test")
	b := e.put("s@example.org", "FIRST@mx.test")
	c := e.put("s@example.org", "bad@mx.test")
	e.start()
	e.waitFor("delivery", 10*time.Second, func() bool {
		return e.gone(a) && e.gone(b) && e.inQueue(queue.Deferred, c)
	})
	if n := committed.Load(); n != 2 {
		t.Errorf("%d commits ran, want 2", n)
	}
	e.wantLog(`^postfix/local\[PID\]: ` + a + `: to=<first@mx.test>, relay=local, .*status=sent \(delivered to maildir\)$`)
	e.wantLog(`^postfix/local\[PID\]: ` + c + `: to=<bad@mx.test>, relay=local, .*dsn=4.3.0, status=deferred \(cannot sync maildir directory /m/new: Input/output error\)$`)
}

// firsts counts the requests the recorder got for first@mx.test.
func firsts(rec *recorder) int {
	n := 0
	for _, r := range rec.requests() {
		if strings.EqualFold(r.rcpts[0], "first@mx.test") {
			n++
		}
	}
	return n
}
