package asuser

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"moat/internal/delivery"
	"moat/internal/delivery/maildir"
)

// Deferred fsyncs of a Maildir's new/ (maildir.Options.DeferSync). moat
// fsyncs new/ after linking a message into it, so that a delivery it
// reports survives a crash (Postfix's local(8) fsyncs only the file).
// Done inside each delivery, that fsync held the destination's delivery
// slot and cost one device write per message: in the one-recipient
// Maildir benchmark, skipping it made delivery 25 % faster
// (docs/BENCHMARKS.md, sixth pass). So the queue manager asks the
// executor to deliver without it, frees the slot when the message is
// linked, and asks for the fsync with SyncDir before it records the
// delivery: calls for one directory within syncGather share one fsync.
// A crash before the record leaves the recipient unsettled; the retry
// finds the keyed file in new/ (maildir.Options.Key) and fsyncs new/
// again rather than delivering twice.

// syncGather is how long a SyncDir call waits for others to the same
// directory before the fsync is asked for: long enough to share one
// fsync among the deliveries of a busy mailbox (two at a time by
// default, one every ~1 ms each), short against a delivery's lifetime.
const syncGather = 5 * time.Millisecond

// wireSync is a SyncDir request: fsync the directory Dir (a Maildir's
// new/) with the request's credentials.
type wireSync struct {
	Dir string
}

// validate keeps the executor (root) to what SyncDir asks for: an
// absolute, clean path to a directory named new.
func (w *wireSync) validate() error {
	d := w.Dir
	if !filepath.IsAbs(d) || filepath.Clean(d) != d || strings.IndexByte(d, 0) >= 0 || filepath.Base(d) != "new" {
		return fmt.Errorf("sync: %q is not the absolute path of a Maildir's new/", d)
	}
	return nil
}

// DefersSync reports whether Maildir deliveries through r should leave
// new/'s fsync to SyncDir: only with the executor, where each request is
// a round trip worth sharing.
func (r *Runner) DefersSync() bool { return r.socket != "" }

// SyncDir makes the links in dir (a Maildir's new/, written as creds)
// durable: it returns once an fsync of dir that began after the call has
// ended. Calls for the same directory and identity within syncGather
// share one request to the executor (group commit).
func (r *Runner) SyncDir(ctx context.Context, creds Creds, dir string) error {
	w := wireSync{Dir: dir}
	if err := w.validate(); err != nil {
		return childFailed(err)
	}
	if r.socket == "" {
		return syncHere(nil, creds, dir)
	}
	rd := r.syncs.join(credKey(creds)+"\x00"+dir, func() error { return r.callSync(creds, w) })
	select {
	case <-rd.done:
		return rd.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// callSync sends one sync request for a round; it is not any one
// caller's, so it has its own time limit.
func (r *Runner) callSync(creds Creds, w wireSync) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, _, err := r.call(ctx, request{Op: opSync, Creds: creds, Sync: &w}, nil, maxResult, true)
	switch {
	case err != nil:
		return childFailed(err)
	case resp.Result == nil:
		return childFailed(errors.New("the delivery service sent no outcome"))
	case !resp.Result.OK:
		return resp.Result.err()
	}
	return nil
}

// syncBatches are a Runner's SyncDir rounds being gathered, by identity
// and directory.
type syncBatches struct {
	mu     sync.Mutex
	rounds map[string]*syncRound
}

// syncRound is one shared fsync: done is closed when it has ended, with
// err its outcome.
type syncRound struct {
	done chan struct{}
	err  error
}

// join returns the round for key that is still gathering callers,
// starting one (which runs do after syncGather) when there is none.
// A round stops taking callers when its fsync is asked for, so every
// caller's fsync begins after its call.
func (b *syncBatches) join(key string, do func() error) *syncRound {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rd := b.rounds[key]; rd != nil {
		return rd
	}
	if b.rounds == nil {
		b.rounds = map[string]*syncRound{}
	}
	rd := &syncRound{done: make(chan struct{})}
	b.rounds[key] = rd
	time.AfterFunc(syncGather, func() {
		b.mu.Lock()
		delete(b.rounds, key)
		b.mu.Unlock()
		rd.err = do()
		close(rd.done)
	})
	return rd
}

// syncHere fsyncs dir on a thread with creds' file-system identity (a
// kept one of pool, sharing the fsync with concurrent deliveries to dir,
// or a new one when pool is nil).
func syncHere(pool *threadPool, creds Creds, dir string) error {
	var err error
	work := func() { err = maildir.SyncDir(dir) }
	if pool != nil {
		shared := pool.syncNew(credKey(creds))
		work = func() { err = shared(dir) }
	}
	if terr := pool.run(creds, work); terr != nil {
		return terr
	}
	if err != nil {
		// Temporary, as a failed write is: the recipient is tried
		// again.
		return &delivery.Error{DSN: "4.3.0", Text: "cannot sync maildir directory " + dir + ": " + delivery.Strerror(err), Err: err}
	}
	return nil
}
