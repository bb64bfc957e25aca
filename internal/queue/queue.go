// Package queue is moat's durable mail queue: Postfix's queue directory
// layout (incoming, active, deferred, hold, corrupt, maildrop), one file per
// message named by a long queue ID, written as a stream and acknowledged only
// once durable, with group commit of directory fsyncs across concurrent
// writers. The file format is described in format.go, the ID format in id.go.
//
// Producers (smtpd through cleanup, sendmail) use NewMessage and
// Writer.Commit; consumers (qmgr, delivery agents, mailq, postsuper) use the
// Consumer methods. Recover runs at start-up, before any producer.
package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Queue names, as in Postfix's queue_directory (postconf(5),
// queue_directory; qmgr(8) "QUEUES").
const (
	Incoming = "incoming" // committed, not yet seen by the scheduler
	Active   = "active"   // opened by the scheduler for delivery
	Deferred = "deferred" // waiting for a retry
	Hold     = "hold"     // kept until an admin releases it (postsuper -H)
	Corrupt  = "corrupt"  // failed validation; kept for inspection
	Maildrop = "maildrop" // local submission (sendmail/postdrop)
)

// Names lists every queue directory Open creates, in Postfix's order.
func Names() []string {
	return []string{Incoming, Active, Deferred, Hold, Corrupt, Maildrop}
}

func knownQueue(name string) bool {
	for _, n := range Names() {
		if n == name {
			return true
		}
	}
	return false
}

// Options control Open.
type Options struct {
	// Create makes missing queue directories (mode 0700). Without it a
	// missing directory is an error, as `postfix check` reports it.
	Create bool
	// Owner is the uid every queue directory must belong to (mail_owner
	// once the master drops privileges), used only when OwnerSet is true;
	// otherwise the caller's effective uid.
	Owner    int
	OwnerSet bool
	// HashQueues names the queues spread over subdirectories and
	// HashDepth how many levels deep (postconf(5) hash_queue_names,
	// hash_queue_depth), for queues that grow large. Depth 0 means flat.
	HashQueues []string
	HashDepth  int
	// NoGroupCommit makes every commit fsync its directory alone. It
	// exists for the benchmark that measures what group commit buys.
	NoGroupCommit bool
	// Logf receives warnings (files moved to corrupt/, temporary files
	// removed). Nil discards them.
	Logf func(format string, args ...any)
	// MaildropGroup is setgid_group's gid, used only when
	// MaildropGroupSet: maildrop/ is then mode 1730 owned by Owner and
	// that group, as Postfix's post-install makes it, so the set-group-ID
	// postdrop can add files but nobody except the owner can list, read
	// or remove them (the sticky bit keeps users from removing one
	// another's files). Create makes it so, and turns an existing 0700
	// maildrop/ into that; a 0700 maildrop/ is still accepted (it only
	// closes local submission to everyone but root and mail_owner).
	MaildropGroup    int
	MaildropGroupSet bool
}

// maildropMode is maildrop/'s mode when MaildropGroupSet.
const maildropMode = fs.ModeDir | fs.ModeSticky | 0o730

// Queue is an open queue directory. It is safe for concurrent use by many
// goroutines; several processes may use one directory at once (each rename
// is atomic), but Recover must run alone.
type Queue struct {
	dir    string
	opts   Options
	owner  int
	syncer map[string]*dirSync // by leaf directory relative to dir; fixed at Open
	hashed map[string]bool
	mu     sync.Mutex
	last   int64 // last ID time in Unix microseconds
	tmpSeq uint64
}

// Open validates (and with opts.Create, creates) the queue directories under
// dir and returns the queue. Wrong ownership or permissions are errors that
// name the path and the fix, because a queue readable by others leaks mail
// and one writable by others lets anyone inject it.
func Open(dir string, opts Options) (*Queue, error) {
	q, err := newQueueValue(dir, opts)
	if err != nil {
		return nil, err
	}
	if err := q.checkTop(); err != nil {
		return nil, err
	}
	for _, name := range Names() {
		for _, rel := range q.dirs(name) {
			p := filepath.Join(dir, rel)
			if err := q.checkDir(p); err != nil {
				return nil, err
			}
			q.syncer[rel] = &dirSync{path: p, solo: opts.NoGroupCommit}
		}
	}
	return q, nil
}

func newQueueValue(dir string, opts Options) (*Queue, error) {
	q := &Queue{dir: dir, opts: opts, owner: os.Geteuid(), syncer: map[string]*dirSync{}, hashed: map[string]bool{}}
	if opts.OwnerSet {
		q.owner = opts.Owner
	}
	if opts.HashDepth < 0 || opts.HashDepth > maxHashDepth {
		return nil, fmt.Errorf("queue: hash_queue_depth %d: want 0 to %d", opts.HashDepth, maxHashDepth)
	}
	for _, name := range opts.HashQueues {
		if !knownQueue(name) {
			// Postfix also hashes its logs (defer, bounce, ...); moat keeps
			// that information in the queue file, so those names are no-ops.
			continue
		}
		if opts.HashDepth > 0 {
			q.hashed[name] = true
		}
	}
	return q, nil
}

// Check reports every problem with the queue directories under dir, not
// just the first, for `postfix check`, which lists them all so that an admin
// fixes them in one pass. It creates nothing.
func Check(dir string, opts Options) []error {
	opts.Create = false
	q, err := newQueueValue(dir, opts)
	if err != nil {
		return []error{err}
	}
	var errs []error
	if err := q.checkTop(); err != nil {
		return []error{err}
	}
	for _, name := range Names() {
		for _, rel := range q.dirs(name) {
			if err := q.checkDir(filepath.Join(dir, rel)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// Dir returns the queue directory.
func (q *Queue) Dir() string { return q.dir }

func (q *Queue) logf(format string, args ...any) {
	if q.opts.Logf != nil {
		q.opts.Logf(format, args...)
	}
}

func (q *Queue) checkTop() error {
	st, err := os.Stat(q.dir)
	if errors.Is(err, fs.ErrNotExist) && q.opts.Create {
		if err := os.MkdirAll(q.dir, 0o755); err != nil {
			return fmt.Errorf("queue: create %s: %w", q.dir, err)
		}
		st, err = os.Stat(q.dir)
	}
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("queue: %s is not a directory", q.dir)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("queue: %s has mode %04o, writable by others: chmod go-w %s",
			q.dir, st.Mode().Perm(), q.dir)
	}
	return nil
}

func (q *Queue) checkDir(p string) error {
	if q.opts.MaildropGroupSet && p == filepath.Join(q.dir, Maildrop) {
		return q.checkMaildrop(p)
	}
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) && q.opts.Create {
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("queue: create %s: %w", p, err)
		}
		// Root creates the queue for mail_owner (postfix start does so,
		// as Postfix's post-install set-permissions does).
		if q.owner != os.Geteuid() && os.Geteuid() == 0 {
			if err := os.Lchown(p, q.owner, -1); err != nil {
				return fmt.Errorf("queue: create %s: %w", p, err)
			}
		}
		if err := syncPath(filepath.Dir(p)); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		st, err = os.Lstat(p)
	}
	if err != nil {
		return fmt.Errorf("queue: %w (run `postfix start` or create it with mode 0700)", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("queue: %s is not a directory: move it away and let moat create it", p)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != q.owner {
		return fmt.Errorf("queue: %s is owned by uid %d, want %d: chown %d %s",
			p, sys.Uid, q.owner, q.owner, p)
	}
	if st.Mode().Perm() != 0o700 {
		return fmt.Errorf("queue: %s has mode %04o, want 0700: chmod 0700 %s", p, st.Mode().Perm(), p)
	}
	return nil
}

// path returns the file name of message id in queue name.
func (q *Queue) path(name, id string) (string, error) {
	if !knownQueue(name) {
		return "", fmt.Errorf("queue: unknown queue %q", name)
	}
	if !ValidID(id) {
		return "", fmt.Errorf("queue: bad queue ID %q", id)
	}
	return filepath.Join(q.dir, q.leaf(name, id), id), nil
}

// maxHashDepth bounds hash_queue_depth: 16^3 directories per queue is
// already more than any queue needs.
const maxHashDepth = 3

const hexDigits = "0123456789ABCDEF"

// leaf returns the directory, relative to the queue directory, that holds
// message id in queue name. Hashed queues use the low-order hexadecimal
// digits of the ID's microseconds, one per level (postconf(5),
// hash_queue_depth, hashes the microseconds in hexadecimal too), which spread
// messages evenly.
func (q *Queue) leaf(name, id string) string {
	if !q.hashed[name] {
		return name
	}
	t, _, _ := ParseID(id)
	usec := t.Nanosecond() / 1000
	p := name
	for i := 0; i < q.opts.HashDepth; i++ {
		p += "/" + string(hexDigits[usec&15])
		usec >>= 4
	}
	return p
}

// dirs returns the directories of queue name relative to the queue
// directory, parents before children, leaves last at each level.
func (q *Queue) dirs(name string) []string {
	out := []string{name}
	level := []string{name}
	for d := 0; q.hashed[name] && d < q.opts.HashDepth; d++ {
		var next []string
		for _, p := range level {
			for _, c := range hexDigits {
				next = append(next, p+"/"+string(c))
			}
		}
		out = append(out, next...)
		level = next
	}
	return out
}

// leaves returns the directories of queue name that hold messages.
func (q *Queue) leaves(name string) []string {
	d := q.dirs(name)
	if !q.hashed[name] {
		return d
	}
	n := 1
	for i := 0; i < q.opts.HashDepth; i++ {
		n *= 16
	}
	return d[len(d)-n:]
}

// syncerFor returns the group syncer of the directory holding id.
func (q *Queue) syncerFor(name, id string) *dirSync {
	return q.syncer[q.leaf(name, id)]
}

// nextTime returns a time strictly after every earlier one this Queue
// returned, so that IDs sort in arrival order even when the clock stalls or
// steps back.
func (q *Queue) nextTime() time.Time {
	now := time.Now().UnixMicro()
	q.mu.Lock()
	if now <= q.last {
		now = q.last + 1
	}
	q.last = now
	q.mu.Unlock()
	return time.UnixMicro(now)
}

func syncPath(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return nil
}

// dirSync makes directory entries durable, sharing one fsync among every
// caller that arrives while an earlier fsync runs (group commit): a caller
// whose rename finished before a fsync started is covered by it, so it waits
// for the next fsync to start after its arrival instead of issuing its own.
//
// An fsync error is sticky. After a failed fsync Linux may report success for
// later ones although the entries were lost, so the queue fails closed: every
// later commit into that directory fails until the process restarts.
type dirSync struct {
	path    string
	solo    bool
	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	started uint64
	done    uint64
	err     error
}

func (s *dirSync) sync() error {
	if s.solo {
		return syncPath(s.path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cond == nil {
		s.cond = sync.NewCond(&s.mu)
	}
	// The fsync that covers us is the first to start after now.
	target := s.started + 1
	for {
		if s.err != nil {
			return s.err
		}
		if s.done >= target {
			return nil
		}
		if !s.running {
			s.running = true
			s.started++
			gen := s.started
			s.mu.Unlock()
			err := syncPath(s.path)
			s.mu.Lock()
			s.running = false
			if err != nil && s.err == nil {
				s.err = err
			}
			s.done = gen
			s.cond.Broadcast()
			continue
		}
		s.cond.Wait()
	}
}

// checkMaildrop makes (with Create) and checks maildrop/ when a maildrop
// group is set: mode 1730, owner q.owner, group MaildropGroup, or the
// stricter 0700 owned by q.owner.
func (q *Queue) checkMaildrop(p string) error {
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) && q.opts.Create {
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("queue: create %s: %w", p, err)
		}
		if err := syncPath(filepath.Dir(p)); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		st, err = os.Lstat(p)
	}
	if err != nil {
		return fmt.Errorf("queue: %w (run `postfix start` or create it with mode 1730)", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("queue: %s is not a directory: move it away and let moat create it", p)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("queue: %s: no owner information", p)
	}
	good := int(sys.Uid) == q.owner && st.Mode() == maildropMode && int(sys.Gid) == q.opts.MaildropGroup
	if !good && q.opts.Create && os.Geteuid() == 0 {
		// Group and owner first, then mode: the directory is never
		// group-writable for the wrong group.
		if err := os.Lchown(p, q.owner, q.opts.MaildropGroup); err != nil {
			return fmt.Errorf("queue: chown %s: %w", p, err)
		}
		if err := os.Chmod(p, maildropMode.Perm()|fs.ModeSticky); err != nil {
			return fmt.Errorf("queue: chmod %s: %w", p, err)
		}
		return nil
	}
	if int(sys.Uid) != q.owner {
		return fmt.Errorf("queue: %s is owned by uid %d, want %d: chown %d %s", p, sys.Uid, q.owner, q.owner, p)
	}
	if good || st.Mode() == fs.ModeDir|0o700 {
		// 0700: not root, so it could not be given to the group; it stays
		// closed to local submission, which is safe.
		return nil
	}
	return fmt.Errorf("queue: %s has mode %v group %d, want drwx-wx--T group %d: chgrp %d %s; chmod 1730 %s",
		p, st.Mode(), sys.Gid, q.opts.MaildropGroup, q.opts.MaildropGroup, p, p)
}
