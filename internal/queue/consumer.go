package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// Consumer is what the scheduler, delivery agents, mailq and postsuper need
// from the queue. *Queue implements it; tests of those packages can fake it.
type Consumer interface {
	List(name string) ([]string, error)
	Open(name, id string) (*Message, error)
	Stat(name, id string) (Info, error)
	Move(id, from, to string) error
	Remove(name, id string) error
	UpdateRecipients(name, id string, updates []RecipientUpdate) error
}

var _ Consumer = (*Queue)(nil)

// List returns the IDs in the named queue in ID order, which is arrival
// order (qmgr(8) takes incoming mail first come, first served). Names that
// are not queue IDs (temporary files) are skipped.
func (q *Queue) List(name string) ([]string, error) {
	if !knownQueue(name) {
		return nil, fmt.Errorf("queue: unknown queue %q", name)
	}
	var ids []string
	for _, rel := range q.leaves(name) {
		ents, err := os.ReadDir(filepath.Join(q.dir, rel))
		if err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
		for _, e := range ents {
			if ValidID(e.Name()) && q.leaf(name, e.Name()) == rel {
				ids = append(ids, e.Name())
			}
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Info is what mailq (postqueue -p) shows of one message.
type Info struct {
	ID       string
	Queue    string
	Size     int64 // content bytes
	Arrival  time.Time
	Sender   string
	Held     bool // in the hold queue: mailq marks it '!'
	Active   bool // in the active queue: mailq marks it '*'
	Envelope Envelope
	// Recipients are those not yet delivered or bounced, with the
	// deferral reason if any, as mailq lists them.
	Recipients []Recipient
}

// Stat reads a message's envelope without its content.
func (q *Queue) Stat(name, id string) (Info, error) {
	m, err := q.Open(name, id)
	if err != nil {
		return Info{}, err
	}
	defer m.Close()
	e := m.Envelope
	in := Info{ID: id, Queue: name, Size: e.Size, Arrival: e.Arrival, Sender: e.Sender,
		Held: name == Hold, Active: name == Active, Envelope: e}
	for _, r := range e.Recipients {
		if r.State != RcptDelivered && r.State != RcptBounced {
			in.Recipients = append(in.Recipients, r)
		}
	}
	return in, nil
}

// Move moves a message between queues (incoming → active → deferred, hold
// and back) with one atomic rename. It refuses to replace a message of the
// same ID in the target queue.
//
// The scheduler's own moves (between incoming, active and deferred) are not
// followed by directory fsyncs: a journaling file system keeps a rename
// atomic across a crash, so the message is in one queue or the other, and
// the scheduler takes it from either (RequeueActive, the deferred scan).
// That saves two fsyncs per message on the delivery path. A move into or
// out of hold or corrupt records an admin's or recovery's decision, which a
// crash must not undo, so those directories are made durable
// (group-committed like Commit).
func (q *Queue) Move(id, from, to string) error {
	moved, err := q.rename(id, from, to)
	if err != nil || !moved || (schedulerQueue(from) && schedulerQueue(to)) {
		return err
	}
	if err := q.syncerFor(to, id).sync(); err != nil {
		return fmt.Errorf("queue: move %s to %s: %w", id, to, err)
	}
	if err := q.syncerFor(from, id).sync(); err != nil {
		return fmt.Errorf("queue: move %s to %s: %w", id, to, err)
	}
	return nil
}

// rename is Move's atomic step. It reports false (and no error) when from
// and to are the same queue, where there is nothing to do.
func (q *Queue) rename(id, from, to string) (bool, error) {
	src, err := q.path(from, id)
	if err != nil {
		return false, err
	}
	dst, err := q.path(to, id)
	if err != nil {
		return false, err
	}
	if from == to {
		return false, nil
	}
	// A missing source is "not found" (fs.ErrNotExist) whatever the
	// target holds, so the source is looked at only when the target
	// exists; otherwise rename(2) says ENOENT itself. syscall.Rename, not
	// os.Rename, which stats the target a second time (one stat per move
	// instead of three: postsuper makes thousands).
	if _, err := os.Lstat(dst); err == nil {
		if _, err := os.Lstat(src); err != nil {
			return false, fmt.Errorf("queue: move %s from %s: %w", id, from, err)
		}
		return false, fmt.Errorf("queue: move %s to %s: %s exists", id, to, dst)
	}
	if err := syscall.Rename(src, dst); err != nil {
		return false, fmt.Errorf("queue: move %s from %s to %s: %w", id, from, to,
			&os.LinkError{Op: "rename", Old: src, New: dst, Err: err})
	}
	return true, nil
}

// Batch collects the directories that a series of moves and removals
// touched, so that one fsync of each makes them all durable. postsuper
// moves or deletes thousands of messages in one command, and an fsync per
// message, even group-committed among 64 concurrent moves, cost ~4300
// fsyncs and 0.8 s for a release of 5000 held messages (Postfix's postsuper
// fsyncs nothing). Nothing a batch does is durable until Sync returns; a
// crash before that leaves each message whole in its old queue or in its
// new one (each step is one rename or unlink), never lost or doubled.
type Batch struct {
	q     *Queue
	dirty map[*dirSync]bool
}

// NewBatch starts a batch of moves and removals.
func (q *Queue) NewBatch() *Batch {
	return &Batch{q: q, dirty: map[*dirSync]bool{}}
}

// Move is Queue.Move without the directory fsyncs, which Sync does once for
// the whole batch. Like Queue.Move it reports fs.ErrNotExist for a message
// that is not in from.
func (b *Batch) Move(id, from, to string) error {
	moved, err := b.q.rename(id, from, to)
	if err != nil || !moved {
		return err
	}
	b.dirty[b.q.syncerFor(to, id)] = true
	b.dirty[b.q.syncerFor(from, id)] = true
	return nil
}

// Remove deletes a message; Sync makes the removal durable, as
// RemoveDurably does for one message.
func (b *Batch) Remove(name, id string) error {
	s, err := b.q.remove(name, id)
	if err != nil {
		return err
	}
	b.dirty[s] = true
	return nil
}

// Sync fsyncs every directory the batch changed, once each. After an error
// the batch keeps the directories not yet synced, so a later Sync retries
// them (the queue's sticky fsync error makes that fail too, as it must).
func (b *Batch) Sync() error {
	for s := range b.dirty {
		if err := s.sync(); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		delete(b.dirty, s)
	}
	return nil
}

// schedulerQueue reports the queues the scheduler moves messages between.
func schedulerQueue(name string) bool {
	return name == Incoming || name == Active || name == Deferred
}

// Remove deletes a message whose every recipient is settled. It does not
// fsync the directory: a crash may bring back a finished message, whose
// state log says every recipient is settled, so the scheduler removes it
// again without delivering anything (Postfix's queue manager does not
// fsync removals either). postsuper -d removes mail that may still be
// pending; it uses RemoveDurably.
func (q *Queue) Remove(name, id string) error {
	_, err := q.remove(name, id)
	return err
}

// RemoveDurably deletes a message and makes the removal durable, so that a
// crash cannot bring back mail an admin deleted (postsuper -d).
func (q *Queue) RemoveDurably(name, id string) error {
	s, err := q.remove(name, id)
	if err != nil {
		return err
	}
	if err := s.sync(); err != nil {
		return fmt.Errorf("queue: remove %s: %w", id, err)
	}
	return nil
}

func (q *Queue) remove(name, id string) (*dirSync, error) {
	p, err := q.path(name, id)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(p); err != nil {
		return nil, fmt.Errorf("queue: remove %s: %w", id, err)
	}
	return q.syncerFor(name, id), nil
}

// RecipientUpdate settles (or defers) one recipient, by its index in
// Envelope.Recipients.
type RecipientUpdate struct {
	Index  int
	State  RcptState
	Reason string // deferral or bounce reason, shown by mailq
	// Replayable says the agent's delivery can be repeated without
	// effect (a Maildir file named by queue ID and recipient: the retry
	// finds it), so its record need not be durable at once: a crash that
	// loses it makes the retry find the earlier delivery, not make a
	// second one. An update of only replayable records skips the fsync,
	// which the next journal commit does anyway.
	Replayable bool
}

// RequeueActive moves every message in active/ back to incoming/. The
// scheduler calls it when it starts, as Postfix's qmgr does: a message left
// in active/ was being delivered when the previous scheduler stopped, and
// its state log says which recipients are already done.
func (q *Queue) RequeueActive() (int, error) {
	ids, err := q.List(Active)
	if err != nil {
		return 0, err
	}
	for i, id := range ids {
		if err := q.Move(id, Active, Incoming); err != nil {
			return i, err
		}
	}
	return len(ids), nil
}

// Find returns the queue holding message id, for commands that take a bare
// queue ID (postsuper -d/-h/-H, postqueue -i). Corrupt files are not
// messages and are not searched.
func (q *Queue) Find(id string) (string, error) {
	for _, name := range []string{Incoming, Active, Deferred, Hold, Maildrop} {
		p, err := q.path(name, id)
		if err != nil {
			return "", err
		}
		if _, err := os.Lstat(p); err == nil {
			return name, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("queue: find %s: %w", id, err)
		}
	}
	return "", fmt.Errorf("queue: %s: no such message: %w", id, fs.ErrNotExist)
}

// Unsettled returns the indexes of the recipients still to be tried
// (pending or deferred). When it is empty, every recipient is delivered or
// bounced and the scheduler removes the message.
func (e *Envelope) Unsettled() []int {
	var idx []int
	for i, r := range e.Recipients {
		if r.State != RcptDelivered && r.State != RcptBounced {
			idx = append(idx, i)
		}
	}
	return idx
}
