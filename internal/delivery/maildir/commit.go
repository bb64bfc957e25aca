package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"moat/internal/delivery"
)

// MaxCommit bounds the names one Commit takes.
const MaxCommit = 4096

// ValidName reports whether name can be a staged delivery's file name: a
// single path element, as deliverKeyed makes them.
func ValidName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= 255 &&
		!strings.ContainsAny(name, "/\x00")
}

// Commit finishes deliveries staged into the Maildir dir (Options.Stage):
// each name's tmp/ file is fsynced, linked into new/ and its tmp/ name
// dropped, then new/ is fsynced once for all (through opts.SyncNew when
// set). A name new/ already holds (an earlier Commit, or a retry that
// found it) is only fsynced with the rest. The message is durable in tmp/
// before its link, so a file in new/ is never a partly written one, as
// with Deliver. Every name is tried; the error is the first failure, a
// temporary one (4.3.0): the recipients are retried, and a retry finds
// the names already linked.
//
// The files are opened by the caller (the recipient's credentialed
// thread, whose identity the opens and links need) and fsynced at once,
// commitParallel at a time: concurrent fsyncs share the device's cache
// flushes, where one after the other each waits for its own
// (docs/BENCHMARKS.md, issue 5, sixth pass).
func Commit(dir string, names []string, opts Options) error {
	if len(names) == 0 || len(names) > MaxCommit {
		return commitError(dir, fmt.Errorf("%d names to commit (1 to %d)", len(names), MaxCommit))
	}
	tmpDir, newDir := filepath.Join(dir, "tmp"), filepath.Join(dir, "new")
	var first error
	fail := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	staged := make([]stagedFile, 0, len(names))
	for _, name := range names {
		f, err := openStaged(tmpDir, newDir, name)
		fail(err)
		if f.fd >= 0 {
			staged = append(staged, f)
		}
	}
	fsyncAll(staged)
	for _, f := range staged {
		fail(f.link())
	}
	// Only SyncNew is taken from opts: a Stage there must not skip it.
	if err := syncNew(newDir, Options{SyncNew: opts.SyncNew}); err != nil {
		fail(fmt.Errorf("fsync %s: %w", newDir, err))
	}
	if first != nil {
		return commitError(dir, first)
	}
	return nil
}

// commitParallel bounds the fsyncs one Commit runs at once.
const commitParallel = 16

// stagedFile is a staged delivery being committed: its tmp/ file open
// (fd, -1 when there is nothing to commit) and its names.
type stagedFile struct {
	fd               int
	tmpPath, newPath string
	err              error // the fsync's
}

// openStaged opens name's tmp/ file for its fsync; a name new/ already
// holds needs none (fd -1), and its staged copy, if any, is dropped.
func openStaged(tmpDir, newDir, name string) (stagedFile, error) {
	f := stagedFile{fd: -1}
	if !ValidName(name) {
		return f, fmt.Errorf("bad file name %q", name)
	}
	f.tmpPath, f.newPath = filepath.Join(tmpDir, name), filepath.Join(newDir, name)
	if _, err := os.Lstat(f.newPath); err == nil {
		os.Remove(f.tmpPath)
		return f, nil
	}
	fd, err := syscall.Open(f.tmpPath, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return f, &os.PathError{Op: "open", Path: f.tmpPath, Err: err}
	}
	f.fd = fd
	return f, nil
}

// fsyncAll fsyncs and closes every file, commitParallel at a time.
func fsyncAll(files []stagedFile) {
	sem := make(chan struct{}, commitParallel)
	var wg sync.WaitGroup
	for i := range files {
		f := &files[i]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := syscall.Fsync(f.fd); err != nil {
				f.err = &os.PathError{Op: "fsync", Path: f.tmpPath, Err: err}
			}
			syscall.Close(f.fd)
		})
	}
	wg.Wait()
}

// link puts a durable staged file into new/ and drops its tmp/ name.
func (f stagedFile) link() error {
	if f.err != nil {
		return f.err
	}
	if err := os.Link(f.tmpPath, f.newPath); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	os.Remove(f.tmpPath)
	return nil
}

// commitError is a failed Commit: deferred, whatever the cause, since the
// message itself was written whole.
func commitError(dir string, err error) *delivery.Error {
	return &delivery.Error{DSN: "4.3.0", Text: "maildir delivery failed: commit in " + dir + ": " + err.Error(), Err: err}
}
