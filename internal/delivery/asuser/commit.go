package asuser

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"moat/internal/delivery/maildir"
)

// Staged Maildir deliveries (maildir.Options.Stage). A Maildir delivery
// fsyncs the message file before linking it into new/, and moat also
// fsyncs new/ so that a delivery it reports survives a crash (Postfix's
// local(8) fsyncs only the file). Done inside each delivery, those fsyncs
// held the destination's delivery slot: the file's fsync was most of a
// delivery's 1 ms on the executor's thread, and with
// local_destination_concurrency_limit = 2 the slot is what limits
// delivery to one mailbox (docs/BENCHMARKS.md, issue 5, sixth pass). So
// the queue manager asks the executor only to write the message into
// tmp/, frees the slot, and then asks for Commit, which fsyncs the
// files, links them into new/ and fsyncs new/: calls for one Maildir
// within commitGather share one request, and the delivery is recorded only
// after it. A crash before the record leaves the recipient unsettled; the
// retry overwrites the tmp/ file, or finds the message in new/ (only ever
// linked once whole and durable) and commits again, which only fsyncs.

// commitGather is how long a Commit call waits for others to the same
// Maildir before the request is sent: long enough to share the fsync of
// new/ among the deliveries of a busy mailbox (two at a time by default,
// one every ~1 ms each), short against a delivery's lifetime.
const commitGather = 5 * time.Millisecond

// wireCommit is a Commit request: the staged names to commit into the
// Maildir Dir, with the request's credentials.
type wireCommit struct {
	Dir   string
	Names []string
}

// validate keeps the executor (root) to what Commit asks for: an
// absolute, clean directory and plain file names.
func (w *wireCommit) validate() error {
	d := w.Dir
	if !filepath.IsAbs(d) || filepath.Clean(d) != d || strings.IndexByte(d, 0) >= 0 {
		return fmt.Errorf("commit: %q is not an absolute, clean path", d)
	}
	if len(w.Names) == 0 || len(w.Names) > maildir.MaxCommit {
		return fmt.Errorf("commit: %d names (1 to %d)", len(w.Names), maildir.MaxCommit)
	}
	for _, n := range w.Names {
		if !maildir.ValidName(n) {
			return fmt.Errorf("commit: bad file name %q", n)
		}
	}
	return nil
}

// StagesMaildir reports whether Maildir deliveries through r should be
// staged (maildir.Options.Stage) and committed with Commit: only with the
// executor, where each request is a round trip worth sharing.
func (r *Runner) StagesMaildir() bool { return r.socket != "" }

// Commit commits the staged delivery name (a file name Deliver returned
// for a job with maildir.Options.Stage) into the Maildir dir, written as
// creds: it returns once the file is linked into new/ and an fsync of
// new/ that began after the call has ended. Calls for the same Maildir
// and identity within commitGather share one request to the executor.
func (r *Runner) Commit(ctx context.Context, creds Creds, dir, name string) error {
	w := wireCommit{Dir: dir, Names: []string{name}}
	if err := w.validate(); err != nil {
		return childFailed(err)
	}
	if r.socket == "" {
		return commitHere(nil, creds, w)
	}
	rd := r.commits.join(credKey(creds)+"\x00"+dir, name, func(names []string) error {
		return r.callCommit(creds, wireCommit{Dir: dir, Names: names})
	})
	select {
	case <-rd.done:
		return rd.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// callCommit sends one commit request for a round; it is not any one
// caller's, so it has its own time limit.
func (r *Runner) callCommit(creds Creds, w wireCommit) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, _, err := r.call(ctx, request{Op: opCommit, Creds: creds, Commit: &w}, nil, maxResult, true)
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

// commitRounds are a Runner's Commit rounds being gathered, by identity
// and Maildir.
type commitRounds struct {
	mu     sync.Mutex
	rounds map[string]*commitRound
}

// commitRound is one shared commit: names are the staged files it
// commits; done is closed when it has ended, with err its outcome.
type commitRound struct {
	names []string
	done  chan struct{}
	err   error
}

// join adds name to the round for key that is still gathering callers,
// starting one (which runs do with the names after commitGather) when
// there is none. A round stops taking callers when its request is made,
// so every caller's fsync of new/ begins after its call.
func (b *commitRounds) join(key, name string, do func(names []string) error) *commitRound {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rd := b.rounds[key]; rd != nil {
		// (A name twice in a round is harmless: Commit finds it linked
		// the second time.)
		if len(rd.names) < maildir.MaxCommit {
			rd.names = append(rd.names, name)
			return rd
		}
		// Full: it is sent when its time comes, and a new round
		// gathers the rest.
	}
	if b.rounds == nil {
		b.rounds = map[string]*commitRound{}
	}
	rd := &commitRound{names: []string{name}, done: make(chan struct{})}
	b.rounds[key] = rd
	time.AfterFunc(commitGather, func() {
		b.mu.Lock()
		if b.rounds[key] == rd {
			delete(b.rounds, key)
		}
		names := rd.names
		b.mu.Unlock()
		rd.err = do(names)
		close(rd.done)
	})
	return rd
}

// commitHere commits w's names on a thread with creds' file-system
// identity (a kept one of pool, whose new/ fsync is shared with
// concurrent deliveries to the same Maildir, or a new one when pool is
// nil).
func commitHere(pool *threadPool, creds Creds, w wireCommit) error {
	var err error
	var opts maildir.Options
	if pool != nil {
		opts.SyncNew = pool.syncNew(credKey(creds))
	}
	if terr := pool.run(creds, func() { err = maildir.Commit(w.Dir, w.Names, opts) }); terr != nil {
		return terr
	}
	return err
}
