package postsuper

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/queue"
	"moat/internal/rewrite"
)

// requeuer is postsuper -r: a requeued message goes back through
// cleanup(8)'s address rewriting into a new queue file, as postsuper(1)
// says ("A requeued message is moved to the maildrop queue, from where it
// is copied by the pickup(8) and cleanup(8) daemons to a new queue file
// ... subjected again to mail address rewriting and substitution ...
// subjected to the same content_filter settings (if any) as used for new
// local mail submissions"), so a changed canonical_maps or
// virtual_alias_maps applies. Routing (transport_maps, relayhost) is
// decided afresh by the queue manager at every attempt anyway.
//
// Differences from Postfix, kept on purpose: postsuper does the copy
// itself instead of handing the file to pickup (the same tables, read as
// root like every queue command); header addresses are not rewritten
// again and header_checks/body_checks do not run again (Postfix's
// cleanup sees the requeued file's headers once more); content_filter is
// main.cf's, not a pickup row's -o override.
type requeuer struct {
	q      *queue.Queue
	rw     *rewrite.Rewriter
	filter string
	warn   func(string)
}

func newRequeuer(q *queue.Queue, cfg *config.Config, warn func(string)) (*requeuer, error) {
	mo, err := maps.DaemonOptions(cfg, warn)
	if err != nil {
		return nil, err
	}
	rw, err := rewrite.New(cfg, mo)
	if err != nil {
		return nil, err
	}
	return &requeuer{q: q, rw: rw, filter: strings.TrimSpace(cfg.Get("content_filter")), warn: warn}, nil
}

func (r *requeuer) close() {
	if r != nil {
		r.rw.Close()
	}
}

// requeue copies message id from queue name into a new queue file in
// incoming/ with its unsettled recipients, rewritten, and removes the old
// file. It reports false when the message is not there (delivered or moved
// meanwhile).
//
// The message is first moved into hold/, where the queue manager does not
// look, so that it cannot be delivered while it is copied. The copy is
// committed (fsynced) before the old file is removed, and the removal is
// fsynced (with the directory the message was taken from) before the next
// message: a crash loses nothing, and the one window for a duplicate lies
// between those two fsyncs, as Postfix's pickup has between cleanup's
// commit and its unlink of the maildrop file.
func (r *requeuer) requeue(name, id string) (bool, error) {
	b := r.q.NewBatch()
	if name != queue.Hold {
		if err := b.Move(id, name, queue.Hold); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return false, nil
			}
			return false, err
		}
	}
	back := func(err error) (bool, error) {
		if name != queue.Hold {
			if merr := b.Move(id, queue.Hold, name); merr != nil {
				err = fmt.Errorf("%w; and it stays in %s: %v", err, queue.Hold, merr)
			}
		}
		if serr := b.Sync(); serr != nil {
			err = fmt.Errorf("%w; %v", err, serr)
		}
		return false, err
	}
	msg, err := r.q.Open(queue.Hold, id)
	if err != nil {
		if name == queue.Hold && errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return back(err)
	}
	defer msg.Close()
	env := msg.Envelope // the whole envelope: arrival, DSN, client, flags
	env.Recipients = nil
	for _, i := range msg.Envelope.Unsettled() {
		rc := msg.Envelope.Recipients[i]
		rc.State, rc.Reason = queue.RcptPending, ""
		env.Recipients = append(env.Recipients, rc)
	}
	if len(env.Recipients) == 0 {
		// Nothing left to deliver: the queue manager removes it.
		if err := b.Move(id, queue.Hold, queue.Incoming); err != nil {
			return back(err)
		}
		return true, b.Sync()
	}
	if err := r.rw.Envelope(&env); err != nil {
		return back(fmt.Errorf("rewriting: %w", err))
	}
	env.Filter = r.filter
	env.Size = 0
	w, err := r.q.NewMessage()
	if err != nil {
		return back(err)
	}
	if _, err := io.Copy(w, msg.Content()); err != nil {
		w.Abort()
		return back(fmt.Errorf("copying: %w", err))
	}
	w.Envelope = env
	newID, err := w.Commit()
	if err != nil {
		return back(err)
	}
	if warned := msg.Envelope.Warned; !warned.IsZero() {
		// The delay warning already sent stays sent (Postfix's cleanup
		// copies the WARN record), or the copy would warn a second time.
		// The queue manager may take the copy first; then the worst is
		// that second warning, so this is reported, not fatal.
		if err := r.q.MarkWarned(queue.Incoming, newID, warned); err != nil {
			r.warn(fmt.Sprintf("%s: requeued as %s without its delay-warning mark: %v", id, newID, err))
		}
	}
	if err := b.Remove(queue.Hold, id); err != nil {
		return false, err
	}
	return true, b.Sync()
}
