package queue

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// tmpPrefix names files being written. ParseID rejects it ('.' is not in
// the ID alphabet), so scans never see a half-written message, and Recover
// removes what a crash left behind: such a file was never acknowledged.
const tmpPrefix = "tmp."

// Writer streams one new message into the queue. Write the content, fill in
// Envelope at any point before Commit, then Commit (or Abort). The content is
// never held in memory. A Writer is used by one goroutine.
type Writer struct {
	// Envelope is written at Commit; a zero Arrival becomes the ID's time.
	Envelope Envelope

	q    *Queue
	f    *os.File
	bw   *bufio.Writer
	tmp  string
	id   string
	crc  uint32
	size int64
	err  error // first write error; Commit reports it
	done bool
}

// NewMessage starts a message in incoming/ under a temporary name and
// assigns its queue ID, so that smtpd can log the ID before DATA ends, as
// Postfix does.
func (q *Queue) NewMessage() (*Writer, error) {
	dir := filepath.Join(q.dir, Incoming)
	var f *os.File
	var tmp string
	for tries := 0; ; tries++ {
		q.mu.Lock()
		q.tmpSeq++
		seq := q.tmpSeq
		q.mu.Unlock()
		tmp = filepath.Join(dir, fmt.Sprintf("%s%d.%d", tmpPrefix, os.Getpid(), seq))
		var err error
		f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || tries > 100 {
			return nil, fmt.Errorf("queue: new message: %w", err)
		}
	}
	w := &Writer{q: q, f: f, tmp: tmp, bw: bufio.NewWriterSize(f, 64<<10)}
	if os.Geteuid() == 0 && q.owner != 0 {
		// Root writing into mail_owner's queue (postsuper -r copies a
		// message): the queue manager, which runs as mail_owner, must be
		// able to read and update the file, as with every file smtpd
		// writes after its privilege drop.
		if err := f.Chown(q.owner, -1); err != nil {
			w.Abort()
			return nil, fmt.Errorf("queue: new message: %w", err)
		}
	}
	if err := w.assignID(); err != nil {
		w.Abort()
		return nil, err
	}
	// The 'D' length is patched at Commit.
	hdr := append([]byte(fileMagic), 'D', 0, 0, 0, 0, 0, 0, 0, 0)
	if _, err := w.bw.Write(hdr); err != nil {
		w.Abort()
		return nil, fmt.Errorf("queue: new message: %w", err)
	}
	return w, nil
}

func (w *Writer) assignID() error {
	st, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("queue: new message: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("queue: new message: no inode number on this system")
	}
	w.id = MakeID(w.q.nextTime(), sys.Ino)
	return nil
}

// ID returns the message's queue ID. It changes at Commit only in the
// unlikely case that a file of that name already exists (a queue restored
// from a backup of another file system).
func (w *Writer) ID() string { return w.id }

// Size returns the content bytes written so far, for message_size_limit.
func (w *Writer) Size() int64 { return w.size }

// Write appends message content. A write error (a full disk) is sticky: the
// caller should reply 452 and Abort.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("queue: write after commit or abort")
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	w.crc = crc32.Update(w.crc, crcTable, p[:n])
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("queue: write %s: %w", w.id, err)
		return n, w.err
	}
	return n, nil
}

// WriteString is Write for strings (io.StringWriter).
func (w *Writer) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

// Commit completes the file and makes it durable: the file is fsynced, linked
// into incoming/ (hold/ with FlagHold) under its ID, and that directory
// fsynced, sharing the directory fsync with concurrent commits. Only after a
// nil return may smtpd send 250. Whatever the outcome, the Writer is done.
func (w *Writer) Commit() (string, error) {
	if w.done {
		return "", errors.New("queue: commit after commit or abort")
	}
	id, err := w.commit()
	if err != nil {
		w.Abort()
		return "", err
	}
	w.done = true
	return id, nil
}

func (w *Writer) commit() (string, error) {
	if w.err != nil {
		return "", w.err
	}
	if w.Envelope.Arrival.IsZero() {
		w.Envelope.Arrival, _, _ = ParseID(w.id)
	}
	env, err := encodeEnvelope(&w.Envelope)
	if err != nil {
		return "", fmt.Errorf("queue: commit %s: %w", w.id, err)
	}
	env = append(env, 'Z')
	envCRC := crc32.Checksum(env, crcTable)
	env = binary.BigEndian.AppendUint32(env, w.crc)
	env = binary.BigEndian.AppendUint32(env, envCRC)
	if _, err := w.bw.Write(env); err != nil {
		return "", fmt.Errorf("queue: commit %s: %w", w.id, err)
	}
	if err := w.bw.Flush(); err != nil {
		return "", fmt.Errorf("queue: commit %s: %w", w.id, err)
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(w.size))
	if _, err := w.f.WriteAt(n[:], contentOff+1); err != nil {
		return "", fmt.Errorf("queue: commit %s: %w", w.id, err)
	}
	if err := w.f.Sync(); err != nil {
		return "", fmt.Errorf("queue: commit %s: fsync: %w", w.id, err)
	}
	if err := w.f.Close(); err != nil {
		w.f = nil
		return "", fmt.Errorf("queue: commit %s: %w", w.id, err)
	}
	w.f = nil
	target := Incoming
	if w.Envelope.Flags&FlagHold != 0 {
		target = Hold
	}
	// Link, not rename: link never replaces an existing message.
	for tries := 0; ; tries++ {
		final, err := w.q.path(target, w.id)
		if err != nil {
			return "", err
		}
		err = os.Link(w.tmp, final)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || tries > 10 {
			return "", fmt.Errorf("queue: commit %s: %w", w.id, err)
		}
		_, ino, _ := ParseID(w.id)
		w.id = MakeID(w.q.nextTime(), ino)
	}
	// Until this removal is durable a crash leaves a second name for the
	// same file, which Recover removes; the message is safe either way.
	if err := os.Remove(w.tmp); err != nil {
		w.q.logf("queue: remove %s: %v", w.tmp, err)
	}
	w.tmp = ""
	if err := w.q.syncerFor(target, w.id).sync(); err != nil {
		// The link may or may not survive a crash; we cannot tell. Fail
		// closed: the client gets a temporary error and retries, so take
		// the message back to avoid delivering it twice.
		if p, perr := w.q.path(target, w.id); perr == nil {
			os.Remove(p)
		}
		return "", fmt.Errorf("queue: commit %s: %w", w.id, err)
	}
	return w.id, nil
}

// Abort discards the message. It is safe to call after a failed Commit and
// does nothing after a successful one, so `defer w.Abort()` is the idiom.
func (w *Writer) Abort() error {
	if w.done && w.tmp == "" && w.f == nil {
		return nil
	}
	w.done = true
	var err error
	if w.f != nil {
		err = w.f.Close()
		w.f = nil
	}
	if w.tmp != "" {
		if rerr := os.Remove(w.tmp); rerr != nil && err == nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = rerr
		}
		w.tmp = ""
	}
	if err != nil {
		return fmt.Errorf("queue: abort %s: %w", w.id, err)
	}
	return nil
}

func isTemp(name string) bool { return strings.HasPrefix(name, tmpPrefix) }
