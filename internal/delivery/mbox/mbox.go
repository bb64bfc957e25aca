// Package mbox appends one message to a UNIX mbox file the way Postfix's
// local(8) does for mail_spool_directory, home_mailbox and /file targets:
// a "From sender date" line, ">From " quoting, a blank line after the
// message, the file locked (fcntl and/or a dot-lock) while it grows, fsynced
// before success, and truncated back on any failure so a reader never sees
// half a message.
//
// Differences from Postfix, each on purpose:
//
//   - Every symbolic link is refused (O_NOFOLLOW); safe_open(3) accepts
//     one owned by root. O_NOFOLLOW decides in the open itself, with no
//     window between a look at the link and the open; an admin who wants
//     a mailbox elsewhere names that path in the configuration.
//   - The fcntl lock is a Linux open-file-description lock
//     (F_OFD_SETLK): it conflicts with the classic fcntl locks mail
//     readers take, as Postfix's does, and also between two deliveries
//     in one process, which classic locks do not.
//   - A file whose last message lacks its closing blank line (another
//     writer's doing) gets the missing newlines before the new From_
//     line, so a reader still finds the separator; Postfix appends as is.
//   - When two first deliveries race to create the file, the loser
//     appends to the winner's file; safe_open(3) fails with "cannot
//     create file exclusively: File exists".
//   - mailbox_size_limit is counted in the writer, not set as
//     RLIMIT_FSIZE; the failure is the same EFBIG and "File too large".
//   - A failure to read the queued message defers (4.3.0), as in the
//     maildir package: the queue file is still there to retry from.
//   - Nothing is logged here (the writer runs in a child without the
//     mail log): Postfix's warnings such as "file status changed
//     unexpectedly" appear only as the delivery's reason.
package mbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"moat/internal/delivery"
)

// Options are the per-delivery choices (local(8) "MAILBOX DELIVERY").
type Options struct {
	// Sender is the envelope sender for the From_ line and Return-Path
	// ("" is the null sender: "MAILER-DAEMON" in the From_ line, <> in
	// Return-Path).
	Sender string
	// Time is the From_ line's date; zero means now.
	Time time.Time
	// ReturnPath, Recipient (Delivered-To:), OrigRecipient
	// (X-Original-To:) as in maildir.Options.
	ReturnPath    bool
	Recipient     string
	OrigRecipient string
	// SizeLimit is mailbox_size_limit: the file may not grow past it
	// (5.2.2 "File too large"). Zero means no limit.
	SizeLimit int64
	// Fcntl and DotLock choose the locks (mailbox_delivery_lock: fcntl,
	// flock, dotlock). Flock is flock(2).
	Fcntl, Flock, DotLock bool
	// Create makes the file (mode 0600) when it does not exist.
	Create bool

	// LockAttempts and LockDelay are deliver_lock_attempts and
	// deliver_lock_delay (postconf(5)): how often and how far apart a
	// busy lock is tried again. Zero means Postfix's defaults, 20 and 1s.
	LockAttempts int
	LockDelay    time.Duration
	// StaleLockTime is stale_lock_time: a dot-lock file older than this
	// is removed as left behind by a crash. Zero means 500s.
	StaleLockTime time.Duration
	// DotLockMayFail makes a dot-lock that cannot be created for any
	// reason but "another holds it" a non-event, as local(8) does for
	// /file deliveries into directories the recipient cannot write
	// (mbox_open(3) MBOX_DOT_LOCK_MAY_FAIL).
	DotLockMayFail bool
	// DefaultDSN is the status for open and lock failures that the errno
	// does not classify (mbox_open()'s def_dsn): local(8) passes "5.2.0",
	// virtual(8) "4.2.0". Empty means "5.2.0".
	DefaultDSN string
}

// Postfix's defaults for the lock parameters (postconf(5)).
const (
	defaultLockAttempts  = 20
	defaultLockDelay     = time.Second
	defaultStaleLockTime = 500 * time.Second
)

// copyBufSize is the read and write chunk: the message never sits in
// memory whole.
const copyBufSize = 64 << 10

// Deliver appends msg (lines ending in CRLF, as queued) to the mbox file
// at path. Every failure is a *delivery.Error; the file is then as before.
//
// The error texts are mbox_open(3)'s and mail_copy(3)'s ("unable to lock
// for exclusive access: ...", "error writing message: ..."); the caller
// prepends its own context as Postfix's agents do (local(8): "cannot
// update mailbox PATH for user USER. ", virtual(8): "delivery failed to
// mailbox PATH: ").
func Deliver(path string, msg io.Reader, opts Options) error {
	opts.defaults()
	if opts.DotLock {
		// Only regular files (or none yet) get a dot-lock: a lock beside
		// /dev/null would be silly (mbox_open.c).
		if fi, err := os.Stat(path); err != nil || fi.Mode().IsRegular() {
			held, derr := dotLock(path, opts)
			if derr != nil {
				return derr
			}
			if held {
				defer dotUnlock(path)
			}
		}
	}
	f, created, err := safeOpen(path, opts)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockFile(f, opts); err != nil {
		return err
	}
	// With the lock held, the file must still be the one we opened, with
	// one link: a POP server that replaced the mailbox (mbox_open.c).
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Nlink != 1 {
		return &delivery.Error{DSN: "4.2.0", Text: "target file status changed unexpectedly", Err: syscall.EAGAIN}
	}
	orig := st.Size
	if err := appendMessage(f, orig, msg, opts); err != nil {
		// Truncate while the lock is still held, or a reader could see
		// the partial message between our unlock and truncate.
		_ = f.Truncate(orig)
		_ = f.Sync()
		return err
	}
	if created {
		if err := syncDir(filepath.Dir(path)); err != nil {
			return &delivery.Error{DSN: "4.3.0", Text: "error writing message: " + delivery.Strerror(err), Err: err}
		}
	}
	return nil
}

func (o *Options) defaults() {
	if o.LockAttempts <= 0 {
		o.LockAttempts = defaultLockAttempts
	}
	if o.LockDelay <= 0 {
		o.LockDelay = defaultLockDelay
	}
	if o.StaleLockTime <= 0 {
		o.StaleLockTime = defaultStaleLockTime
	}
	if o.DefaultDSN == "" {
		o.DefaultDSN = "5.2.0"
	}
}

// appendMessage writes the From_ line, the delivery headers and the
// quoted message, then fsyncs. Any error leaves truncation to the caller.
func appendMessage(f *os.File, orig int64, msg io.Reader, opts Options) error {
	var sink io.Writer = f
	if opts.SizeLimit > 0 {
		sink = &limitWriter{w: f, left: opts.SizeLimit - orig}
	}
	bw := bufio.NewWriterSize(sink, copyBufSize)
	q := newQuoter(bw)
	// A file whose last message lacks its blank line (another writer's
	// doing) would glue our From_ line to it; complete the separator.
	sep, err := separatorNeeded(f, orig)
	if err != nil {
		return readFileError(err)
	}
	q.raw(sep)
	q.raw(header(opts))
	buf := make([]byte, copyBufSize)
	for {
		n, rerr := msg.Read(buf)
		if n > 0 {
			q.write(buf[:n])
		}
		if q.err != nil {
			return writeError(q.err)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return &delivery.Error{DSN: "4.3.0", Text: "error reading message: " + delivery.Strerror(rerr), Err: rerr}
		}
	}
	q.finish()
	if q.err == nil {
		q.err = bw.Flush()
	}
	if q.err == nil {
		q.err = f.Sync()
	}
	if q.err != nil {
		return writeError(q.err)
	}
	return nil
}

// separatorNeeded looks at the file's last two bytes: an mbox message
// ends with a blank line, so "\n\n" needs nothing, "\n" one more newline,
// anything else two. An empty file needs nothing.
func separatorNeeded(f *os.File, size int64) (string, error) {
	if size == 0 {
		return "", nil
	}
	var tail [2]byte
	off := max(size-2, 0)
	n, err := f.ReadAt(tail[:size-off], off)
	if errors.Is(err, syscall.EBADF) {
		return "", nil // opened write-only
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	t := string(tail[:n])
	switch {
	case t == "\n\n" || (size == 1 && t == "\n"):
		return "", nil
	case len(t) > 0 && t[len(t)-1] == '\n':
		return "\n", nil
	}
	return "\n\n", nil
}

// header is the From_ line and the delivery headers in mail_copy()'s
// order: From_, Return-Path, X-Original-To, Delivered-To. The date is
// asctime(3) of local time after two spaces, as mail_copy() writes it.
func header(opts Options) string {
	t := opts.Time
	if t.IsZero() {
		t = time.Now()
	}
	sender := "MAILER-DAEMON"
	if opts.Sender != "" {
		sender = delivery.QuoteAddr(opts.Sender)
	}
	s := "From " + sender + "  " + t.Local().Format("Mon Jan _2 15:04:05 2006") + "\n"
	if opts.ReturnPath {
		rp := ""
		if opts.Sender != "" {
			rp = delivery.QuoteAddr(opts.Sender)
		}
		s += "Return-Path: <" + rp + ">\n"
	}
	if opts.OrigRecipient != "" {
		s += "X-Original-To: " + delivery.QuoteAddr(opts.OrigRecipient) + "\n"
	}
	if opts.Recipient != "" {
		s += "Delivered-To: " + delivery.QuoteAddr(opts.Recipient) + "\n"
	}
	return s
}

// limitWriter is mailbox_size_limit: Postfix sets RLIMIT_FSIZE, so the
// write that would pass the limit fails with EFBIG ("File too large").
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, syscall.EFBIG
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	return n, err
}

// safeOpen opens path for appending the way safe_open(3) does: never
// through a symbolic link (moat refuses root-owned ones too), only a
// regular file with exactly one link, created 0600 with O_EXCL when
// missing and allowed. O_NONBLOCK keeps a FIFO planted at path from
// hanging the delivery.
func safeOpen(path string, opts Options) (*os.File, bool, error) {
	// Read access is only for looking at the file's last bytes
	// (separatorNeeded); a file the recipient may only write to is
	// appended to without that check.
	flags := os.O_RDWR | os.O_APPEND | syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	created := false
	f, err := os.OpenFile(path, flags, 0)
	if errors.Is(err, syscall.EACCES) {
		flags = flags&^os.O_RDWR | os.O_WRONLY
		f, err = os.OpenFile(path, flags, 0)
	}
	if errors.Is(err, syscall.ENOENT) && opts.Create {
		f, err = os.OpenFile(path, flags|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, syscall.EEXIST) {
			// Another delivery created it in between (without a
			// dot-lock nothing orders two first deliveries): open
			// theirs, carefully, as if it had been there.
			f, err = os.OpenFile(path, flags, 0)
		} else if err != nil {
			return nil, false, openError(opts, "cannot create file exclusively: ", err)
		} else {
			created = true
		}
	}
	if errors.Is(err, syscall.ELOOP) {
		return nil, false, &delivery.Error{DSN: opts.DefaultDSN, Text: "file is a symbolic link", Err: err}
	} else if err != nil {
		return nil, false, openError(opts, "cannot open file: ", err)
	}
	fail := func(text string) (*os.File, bool, error) {
		f.Close()
		return nil, false, &delivery.Error{DSN: opts.DefaultDSN, Text: text, Err: errors.New(text)}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, false, openError(opts, "cannot open file: ", err)
	}
	switch {
	case st.Nlink != 1:
		return fail(fmt.Sprintf("file has %d hard links", st.Nlink))
	case st.Mode&syscall.S_IFMT == syscall.S_IFDIR:
		return fail("file is a directory")
	case st.Mode&syscall.S_IFMT != syscall.S_IFREG:
		// local(8)'s deliver_mailbox_file() wording.
		f.Close()
		return nil, false, &delivery.Error{DSN: "5.2.0", Text: "destination " + path + " is not a regular file", Err: errors.New("not a regular file")}
	}
	// The name must still lead to what we opened (safe_open_exist()).
	var lst syscall.Stat_t
	if err := syscall.Lstat(path, &lst); err != nil {
		return fail("file status changed unexpectedly: " + delivery.Strerror(err))
	}
	if lst.Dev != st.Dev || lst.Ino != st.Ino || lst.Nlink != st.Nlink || lst.Mode != st.Mode {
		return fail("file status changed unexpectedly")
	}
	return f, created, nil
}

func openError(opts Options, text string, err error) *delivery.Error {
	return &delivery.Error{DSN: delivery.ErrnoDSN(err, opts.DefaultDSN), Text: text + delivery.Strerror(err), Err: err}
}

// writeError is mail_copy()'s "error writing message": 5.3.0 unless the
// errno says the disk (4.3.0) or the mailbox (5.2.2) is full, as in the
// maildir package.
func writeError(err error) *delivery.Error {
	return &delivery.Error{DSN: delivery.ErrnoDSN(err, "5.3.0"), Text: "error writing message: " + delivery.Strerror(err), Err: err}
}

// readFileError is a failure to read back the mailbox's own tail.
func readFileError(err error) *delivery.Error {
	return &delivery.Error{DSN: "4.3.0", Text: "error reading mailbox: " + delivery.Strerror(err), Err: err}
}

// syncDir makes a new file's directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
