// Package maildir writes one message into a Maildir, the way Postfix's
// local(8) and virtual(8) do for a mailbox path ending in "/", with the
// file names Dovecot (the admins' IMAP server) expects.
//
// The protocol is the one in cr.yp.to/proto/maildir.html: write the file
// under tmp/ with a unique name, fsync it, then link it into new/ (link(2)
// never replaces an existing name), so a reader either sees the complete
// message or nothing. moat adds the directory fsyncs the original leaves
// out, so that a delivery reported to the queue manager survives a crash
// ("nothing lost": the queue forgets a message only after this returns).
package maildir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"moat/internal/delivery"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options are the per-delivery choices local(8) makes before copying a
// message (local(8) "MAILBOX DELIVERY" and "EXTERNAL FILE DELIVERY").
type Options struct {
	// ReturnPath prepends "Return-Path: <Sender>" (local(8) does so for
	// every mailbox delivery). Sender may be empty: the null sender gives
	// "Return-Path: <>".
	ReturnPath bool
	// Sender is the envelope sender, in internal (unquoted) form.
	Sender string
	// OrigRecipient, when not empty, prepends "X-Original-To:" with the
	// recipient as given to Postfix (enable_original_recipient, postconf(5)).
	OrigRecipient string
	// Recipient, when not empty, prepends "Delivered-To:" with the final
	// envelope recipient (prepend_delivered_header, postconf(5); local(8)
	// always adds it for mailbox delivery, which mail loop detection needs).
	Recipient string
	// SizeLimit is mailbox_size_limit (postconf(5)): for a Maildir, Postfix
	// limits each message file, prepended headers included, not the whole
	// mailbox. A file that would grow past it fails with "File too large"
	// (5.2.2). Zero means no limit, as in postconf(5).
	SizeLimit int64
	// Hostname is the host part of the unique name; empty means
	// os.Hostname(), as Dovecot and Postfix use.
	Hostname string
	// Key, when not empty, makes the delivery idempotent: the file name
	// is derived from Key and Arrival instead of the clock and pid, and a
	// message already in new/ under that name counts as delivered. The
	// queue manager passes the queue ID and recipient index, so that a
	// crash between this delivery and the queue's record of it does not
	// deliver the message twice when it is retried (unless the reader
	// already moved it to cur/ in between). Key must be a safe file-name
	// part (letters, digits, '.', '-').
	Key     string
	Arrival time.Time
	// SyncNew, when set, replaces the fsync of new/ after the link (it
	// is given new/'s path): the executor shares one fsync among the
	// deliveries that linked into the same new/ meanwhile (group commit).
	// It must return only once an fsync that began after the call has
	// ended. Not sent over the wire.
	SyncNew func(newDir string) error `json:"-"`
	// Stage, with a Key, writes the message into tmp/ under its keyed
	// name and stops there, without an fsync: Commit, called later for
	// many such messages at once, fsyncs each file, links it into new/
	// and fsyncs new/ once. The queue manager frees the destination's
	// delivery slot after the write and records the delivery only after
	// Commit, so the fsyncs leave the slot's critical path
	// (docs/BENCHMARKS.md, issue 5, sixth pass); a crash in between leaves
	// the recipient unsettled and the retry overwrites the tmp/ file.
	// Deliver then returns the path the message will have in new/.
	Stage bool `json:",omitempty"`
}

// maxAttempts bounds the retries after a name collision (EEXIST). Names
// carry the microsecond and a per-call counter, so a collision needs
// another delivery in the same microsecond; a thousand in a row means
// something else is wrong (say, a directory full of stale names).
const maxAttempts = 1000

// copyBufSize is the read chunk; the message never sits in memory whole.
const copyBufSize = 64 << 10

// Deliver writes msg, whose lines end in CRLF as the queue stores them,
// into the Maildir at dir and returns the path of the new file in new/.
// It creates dir, dir/tmp, dir/new and dir/cur (mode 0700) when missing:
// the caller already runs as the recipient, as local(8) does for Maildir
// delivery, so the files belong to the recipient and quotas apply.
//
// Any failure returns an *delivery.Error carrying the DSN and log text local(8)
// would use; then no file is left in tmp/ and nothing appears in new/.
func Deliver(dir string, msg io.Reader, opts Options) (string, error) {
	host := opts.Hostname
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			h = "localhost"
		}
		host = h
	}
	host = escapeHost(host)
	tmpDir := filepath.Join(dir, "tmp")
	newDir := filepath.Join(dir, "new")

	if opts.Key != "" {
		return deliverKeyed(dir, tmpDir, newDir, host, msg, opts)
	}
	if opts.Stage {
		// Without a key, Commit could not name the file, nor a retry
		// find it.
		return "", createError(dir, errors.New("staging a delivery needs a delivery key"))
	}
	pid := os.Getpid()
	var (
		f       *os.File
		tmpPath string
		base    string
		q       int
	)
	for {
		q++
		base = uniqueBase(time.Now(), pid, q, host)
		tmpPath = filepath.Join(tmpDir, base)
		var err error
		f, err = createTmp(dir, tmpPath, syscall.O_EXCL)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || q >= maxAttempts {
			return "", err
		}
	}

	size, err := fillTmp(f, tmpPath, msg, opts)
	if err != nil {
		return "", err
	}
	newPath, err := linkNew(tmpPath, newDir, base, size, pid, q, host)
	if err != nil {
		os.Remove(tmpPath)
		return "", err
	}
	if err := settle(tmpPath, newDir, newPath, true, opts); err != nil {
		return "", err
	}
	return newPath, nil
}

// fillTmp writes the message into the tmp/ file f and closes it; on failure
// it removes the file.
func fillTmp(f *os.File, tmpPath string, msg io.Reader, opts Options) (int64, error) {
	size, derr := writeMessage(f, msg, opts)
	if cerr := f.Close(); derr == nil && cerr != nil {
		derr = writeError(unwrapPath(cerr))
	}
	if derr != nil {
		os.Remove(tmpPath)
		return 0, derr
	}
	return size, nil
}

// settle makes the link into new/ durable and drops the tmp/ name. If new/
// cannot be synced, a link this delivery made is taken back, so that the
// queue's retry cannot duplicate the message.
func settle(tmpPath, newDir, newPath string, linked bool, opts Options) error {
	if err := syncNew(newDir, opts); err != nil {
		if linked {
			os.Remove(newPath)
		}
		os.Remove(tmpPath)
		return writeError(err)
	}
	// The message is safely in new/. The tmp/ name is dropped without a
	// directory fsync: one brought back by a crash is harmless (Dovecot
	// removes tmp/ files older than 36 hours; a keyed retry replaces it).
	os.Remove(tmpPath)
	return nil
}

// syncNew makes new/ durable, unless Commit will (Stage).
func syncNew(newDir string, opts Options) error {
	switch {
	case opts.Stage:
		return nil
	case opts.SyncNew != nil:
		return opts.SyncNew(newDir)
	}
	return SyncDir(newDir)
}

// deliverKeyed is Deliver with a name derived from opts.Key: if new/
// already holds it, an earlier attempt succeeded and this one is skipped.
func deliverKeyed(dir, tmpDir, newDir, host string, msg io.Reader, opts Options) (string, error) {
	if strings.ContainsAny(opts.Key, "/:,\x00") {
		return "", createError(dir, fmt.Errorf("unsafe delivery key %q", opts.Key))
	}
	// No ",S=size" in the name: the size is known only after writing, and
	// the earlier attempt must be found with one lstat(2), not by listing
	// new/, which holds every unread message.
	base := fmt.Sprintf("%d.K%s.%s", opts.Arrival.Unix(), opts.Key, host)
	newPath := filepath.Join(newDir, base)
	if _, err := os.Lstat(newPath); err == nil {
		// The earlier attempt may have ended before its fsync of new/
		// (a crash of the process, not of the machine): this one is
		// reported, so its link must be as durable as a new one.
		if err := syncNew(newDir, opts); err != nil {
			return "", writeError(err)
		}
		return newPath, nil
	}
	tmpPath := filepath.Join(tmpDir, base)
	// A tmp file of an attempt that crashed half-way is replaced.
	f, err := createTmp(dir, tmpPath, syscall.O_TRUNC)
	if err != nil {
		return "", err
	}
	if _, err := fillTmp(f, tmpPath, msg, opts); err != nil {
		return "", err
	}
	if opts.Stage {
		return newPath, nil
	}
	err = link(dir, tmpPath, newPath)
	if err != nil && !errors.Is(err, os.ErrExist) {
		os.Remove(tmpPath)
		return "", createError(newPath, unwrapPath(err))
	}
	if err := settle(tmpPath, newDir, newPath, err == nil, opts); err != nil {
		return "", err
	}
	return newPath, nil
}

// createTmp creates the tmp/ file (O_EXCL for a unique name, O_TRUNC for
// a keyed one). The Maildir's directories are not looked at first: only
// when tmp/ is missing are dir, tmp/, new/ and cur/ created, and the open
// tried again, as Postfix's local(8) does (three stats per delivery
// less). The file is opened with open(2) and handed to os.NewFile, not
// os.OpenFile, whose attempt to register a regular file with the network
// poller costs four fcntl(2)s and a failing epoll_ctl(2) per open.
func createTmp(dir, tmpPath string, mode int) (*os.File, error) {
	flags := syscall.O_WRONLY | syscall.O_CREAT | syscall.O_CLOEXEC | mode
	for try := 0; ; try++ {
		fd, err := syscall.Open(tmpPath, flags, 0o600)
		if err == nil {
			return os.NewFile(uintptr(fd), tmpPath), nil
		}
		if err == syscall.EEXIST {
			return nil, os.ErrExist
		}
		if err != syscall.ENOENT || try > 0 {
			return nil, createError(tmpPath, err)
		}
		if derr := ensureMaildir(dir); derr != nil {
			return nil, derr
		}
	}
}

// link links the finished tmp/ file into new/, creating the Maildir's
// directories and trying once more if new/ is missing (a tmp/ without
// new/: an admin's half-made Maildir). It returns os.ErrExist wrapped for
// an existing name, and unwrapped system errors otherwise.
func link(dir, tmpPath, newPath string) error {
	err := os.Link(tmpPath, newPath)
	if err != nil && errors.Is(err, os.ErrNotExist) {
		if derr := ensureMaildir(dir); derr != nil {
			return derr
		}
		err = os.Link(tmpPath, newPath)
	}
	return err
}

// ensureMaildir creates (mode 0700, parents fsynced) whichever of dir,
// dir/tmp, dir/new and dir/cur is missing.
func ensureMaildir(dir string) error {
	for _, d := range []string{filepath.Join(dir, "tmp"), filepath.Join(dir, "new"), filepath.Join(dir, "cur")} {
		if err := ensureDir(d, 0); err != nil {
			return createError(d, err)
		}
	}
	return nil
}

// linkNew links the finished tmp file into new/ under base plus ",S=size"
// (Dovecot's size field, which spares it a stat). link(2) fails rather than
// replace an existing message, so a colliding name (a clock stepped back,
// a reused pid) gets a new counter and is tried again.
func linkNew(tmpPath, newDir, base string, size int64, pid, q int, host string) (string, error) {
	for {
		newPath := filepath.Join(newDir, base+",S="+strconv.FormatInt(size, 10))
		err := link(filepath.Dir(newDir), tmpPath, newPath)
		if err == nil {
			return newPath, nil
		}
		if !errors.Is(err, os.ErrExist) || q >= maxAttempts {
			return "", createError(newPath, unwrapPath(err))
		}
		q++
		base = uniqueBase(time.Now(), pid, q, host)
	}
}

// writeMessage copies the prepended headers and the converted message into
// f and fsyncs it, returning the file size.
func writeMessage(f *os.File, msg io.Reader, opts Options) (int64, *delivery.Error) {
	bw := bufio.NewWriterSize(f, copyBufSize)
	var out io.Writer = bw
	if opts.SizeLimit > 0 {
		out = &limitWriter{w: bw, left: opts.SizeLimit}
	}
	lw := &lfWriter{w: out}
	if err := lw.writeRaw([]byte(headers(opts))); err != nil {
		return 0, writeError(err)
	}
	buf := make([]byte, copyBufSize)
	for {
		n, rerr := msg.Read(buf)
		if n > 0 {
			if _, err := lw.Write(buf[:n]); err != nil {
				return 0, writeError(err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, readError(rerr)
		}
	}
	if err := lw.Flush(); err != nil {
		return 0, writeError(err)
	}
	// local(8) copies the queue file record by record and ends each with a
	// newline, so a last line without one still ends in LF in the mailbox.
	if lw.n > 0 && lw.last != '\n' {
		if err := lw.writeRaw([]byte{'\n'}); err != nil {
			return 0, writeError(err)
		}
	}
	if err := bw.Flush(); err != nil {
		return 0, writeError(unwrapPath(err))
	}
	if opts.Stage {
		return lw.n, nil // Commit fsyncs it
	}
	if err := f.Sync(); err != nil {
		return 0, writeError(unwrapPath(err))
	}
	return lw.n, nil
}

// limitWriter enforces mailbox_size_limit as Postfix does with
// RLIMIT_FSIZE: a write past the limit fails with EFBIG ("File too
// large"), which maps to 5.2.2.
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
	return n, unwrapPath(err)
}

// unwrapPath strips *os.PathError and *os.LinkError so the text is
// strerror(3)'s alone, as in Postfix's "%m" (the path is in the message
// already).
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// headers renders the delivery headers in local(8)'s order: Return-Path,
// X-Original-To, Delivered-To, each address with its local part quoted
// where RFC 5322 requires it.
func headers(opts Options) string {
	var b strings.Builder
	if opts.ReturnPath {
		b.WriteString("Return-Path: <")
		if opts.Sender != "" {
			b.WriteString(delivery.QuoteAddr(opts.Sender))
		}
		b.WriteString(">\n")
	}
	if opts.OrigRecipient != "" {
		b.WriteString("X-Original-To: " + delivery.QuoteAddr(opts.OrigRecipient) + "\n")
	}
	if opts.Recipient != "" {
		b.WriteString("Delivered-To: " + delivery.QuoteAddr(opts.Recipient) + "\n")
	}
	return b.String()
}

// uniqueBase is the Maildir unique name without the size field:
// "sec.M<usec>P<pid>Q<n>.host", Dovecot's form of the "Mn Pn Qn" parts
// recommended in cr.yp.to/proto/maildir.html. Dovecot's Q is a process-wide
// delivery counter; here it counts this delivery's attempts (a process-wide
// counter would be a package-level global). Uniqueness does not rest on it:
// the tmp/ file is created with O_EXCL and the new/ name with link(2), and
// either collision simply takes the next Q.
func uniqueBase(now time.Time, pid, q int, host string) string {
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, pid, q, host)
}

// escapeHost makes the hostname safe inside a file name: '/' would make a
// path and ':' starts the Maildir info suffix, so both become octal escapes
// (\057, \072) as maildir.html and Dovecot do.
func escapeHost(h string) string {
	if !strings.ContainsAny(h, "/:") {
		return h
	}
	return strings.NewReplacer("/", `\057`, ":", `\072`).Replace(h)
}

// maxDirDepth bounds ensureDir's recursion on absurd paths.
const maxDirDepth = 64

// ensureDir creates dir and any missing parents with mode 0700, fsyncing
// each parent it adds a name to: a Maildir created on first delivery must
// survive a crash together with the message in it. A directory created
// meanwhile by a concurrent delivery is fine.
func ensureDir(dir string, depth int) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return syscall.ENOTDIR
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) || depth > maxDirDepth {
		return unwrapPath(err)
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := ensureDir(parent, depth+1); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return ensureDir(dir, maxDirDepth+1)
		}
		return unwrapPath(err)
	}
	return SyncDir(parent)
}

// SyncDir fsyncs a directory so a link or unlink in it is durable (the
// step the original Maildir protocol leaves out; see the package comment).
// Errors carry no path, as the delivery's own do not.
//
// open(2), fsync(2), close(2) directly: os.Open would add four fcntl(2)s
// and a failing epoll_ctl(2) (the network poller's attempt), and this runs
// once per delivery.
func SyncDir(dir string) error {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	serr := syscall.Fsync(fd)
	cerr := syscall.Close(fd)
	if serr != nil {
		return serr
	}
	return cerr
}

// Count returns the number of messages in the Maildir at dir: the files in
// new/ and cur/ (tmp/ holds deliveries in progress). Names starting with
// '.' are not messages, by the Maildir convention.
func Count(dir string) (int, error) {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return 0, fmt.Errorf("maildir count %s: %w", dir, err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				n++
			}
		}
	}
	return n, nil
}
