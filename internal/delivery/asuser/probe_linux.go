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
func probeDeliverIn(ctx context.Context, pool *threadPool, self string, creds Creds, p *wireProbe, job Job, content io.Reader) (int, wireResult, string, error) {
	if os.Geteuid() != 0 {
		// No identity to take: children do the reads and the write
		// (a development set-up).
		if i, r := probeIn(ctx, pool, self, creds, p); i >= 0 {
			return i, r, "", nil
		}
		path, err := deliverFileIn(ctx, pool, self, creds, job, content)
		return -1, wireResult{}, path, err
	}
	if err := job.validate(); err != nil {
		return -1, wireResult{}, "", childFailed(err)
	}
	pool.maildirJob(creds, &job)
	index := -1
	var read wireResult
	var path string
	var err error
	if terr := pool.run(creds, func() {
		for i, fp := range p.Paths {
			r := childRead(wireJob{Job: Job{Kind: kindRead, Path: fp}, Limit: p.Limit})
			if !r.OK && r.Errno == int(syscall.ENOENT) {
				continue
			}
			index, read = i, r
			return
		}
		path, err = writeMailbox(job, &ctxReader{ctx: ctx, r: content})
	}); terr != nil {
		return -1, wireResult{}, "", terr
	}
	if index >= 0 {
		return index, read, "", nil
	}
	if cerr := ctx.Err(); cerr != nil && err != nil {
		return -1, wireResult{}, "", childFailed(fmt.Errorf("delivery interrupted: %w", cerr))
	}
	return -1, wireResult{}, path, err
}
