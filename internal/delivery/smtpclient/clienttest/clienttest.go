// Package clienttest holds what the tests of the smtp(8) and lmtp(8)
// agents share: a delivery request over content in memory, a delivery
// that checks the delivery.Agent contract, and a result check.
package clienttest

import (
	"bytes"
	"context"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"moat/internal/delivery"
	"moat/internal/queue"
)

// QueueID is the queue ID of every Request.
const QueueID = "4Xg7Hn1F2Bz9abc"

// Request is a delivery request from sender@example.org over content
// held in memory, one recipient per address.
func Request(nexthop string, content []byte, rcpts ...string) *delivery.Request {
	req := &delivery.Request{
		QueueID: QueueID,
		Envelope: &queue.Envelope{
			Sender: "sender@example.org", Size: int64(len(content)), Arrival: time.Now(),
		},
		Content: func() io.Reader { return bytes.NewReader(content) },
		Nexthop: nexthop,
	}
	for i, r := range rcpts {
		req.Recipients = append(req.Recipients, delivery.Recipient{Index: i, Address: r})
		req.Envelope.Recipients = append(req.Envelope.Recipients, queue.Recipient{Address: r})
	}
	return req
}

// Deliver runs one request with a bounded context and returns the
// results by recipient index, checking the contract: one each, each with
// its Done time.
func Deliver(t testing.TB, a delivery.Agent, req *delivery.Request) []delivery.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := a.Deliver(ctx, req)
	if len(res) != len(req.Recipients) {
		t.Fatalf("%d results for %d recipients", len(res), len(req.Recipients))
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Index < res[j].Index })
	for i, r := range res {
		if r.Index != i {
			t.Fatalf("results %+v", res)
		}
		if r.Done.IsZero() {
			t.Errorf("result %d has no Done time", i)
		}
	}
	return res
}

// Check compares a result; a reason ending in "*" matches any text that
// starts with the rest (a server's queue ID, say).
func Check(t testing.TB, r delivery.Result, st queue.RcptState, dsn, reason, relay string) {
	t.Helper()
	ok := r.Reason == reason
	if p, wild := strings.CutSuffix(reason, "*"); wild {
		ok = strings.HasPrefix(r.Reason, p)
	}
	if r.State != st || r.DSN != dsn || !ok || r.Relay != relay {
		t.Errorf("result %d:\n got  %v dsn=%s relay=%s (%s)\n want %v dsn=%s relay=%s (%s)",
			r.Index, r.State, r.DSN, r.Relay, r.Reason, st, dsn, relay, reason)
	}
}
