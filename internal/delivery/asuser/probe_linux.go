package asuser

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
)

// probeDeliverIn is the executor's side of a deliver request with a
// probe: the reads and the write run in one turn of one credentialed
// thread (a hand-off to a pool thread and back is a good part of a small
// delivery's cost on this path). It returns the index and read of the
// first path that exists, or -1 with the delivery's outcome.
//
// When answer is not nil, the thread calls it with that outcome once it
// is idle in the pool again, so that the answer to the client need not wait for the
// caller's goroutine to be woken and scheduled (one thread switch less
// on the delivery slot's critical path; docs/BENCHMARKS.md, issue 5,
// sixth pass); it returns whether it answered. A delivery done by
// children (not root) is not answered there.
func probeDeliverIn(ctx context.Context, pool *threadPool, self string, creds Creds, p *wireProbe, job Job, content io.Reader, answer func(int, wireResult, string, error)) (int, wireResult, string, error, bool) {
	if os.Geteuid() != 0 {
		// No identity to take: children do the reads and the write
		// (a development set-up).
		if i, r := probeIn(ctx, pool, self, creds, p); i >= 0 {
			return i, r, "", nil, false
		}
		path, err := deliverFileIn(ctx, pool, self, creds, job, content)
		return -1, wireResult{}, path, err, false
	}
	if err := job.validate(); err != nil {
		return -1, wireResult{}, "", childFailed(err), false
	}
	pool.maildirJob(creds, &job)
	index := -1
	var read wireResult
	var path string
	var err error
	answered := false
	var then func()
	if answer != nil {
		then = func() {
			answer(index, read, path, err)
			answered = true
		}
	}
	if terr := pool.runThen(creds, func() {
		index, read, path, err = probeDeliver(ctx, p, job, content)
	}, then); terr != nil {
		return -1, wireResult{}, "", terr, false
	}
	return index, read, path, err, answered
}

// probeDeliver is probeDeliverIn's work on the credentialed thread.
func probeDeliver(ctx context.Context, p *wireProbe, job Job, content io.Reader) (int, wireResult, string, error) {
	for i, fp := range p.Paths {
		r := childRead(wireJob{Job: Job{Kind: kindRead, Path: fp}, Limit: p.Limit})
		if !r.OK && r.Errno == int(syscall.ENOENT) {
			continue
		}
		return i, r, "", nil
	}
	path, err := writeMailbox(job, &ctxReader{ctx: ctx, r: content})
	if cerr := ctx.Err(); cerr != nil && err != nil {
		return -1, wireResult{}, "", childFailed(fmt.Errorf("delivery interrupted: %w", cerr))
	}
	return -1, wireResult{}, path, err
}
