package asuser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"moat/internal/delivery"
)

// kindRead is the child's third job: read one file with the child's
// (the recipient's) rights and send its content back. It is not a Kind
// callers put in a Job: ReadFile makes it.
const kindRead Kind = "read"

// MaxReadLimit bounds ReadOptions.Limit: the largest file ReadFile returns
// (local(8)'s .forward and :include: files are small; the bound keeps the
// child's answer, base64 in JSON, within reason).
const MaxReadLimit = 16 << 20

// ReadOptions say how ReadFile reads.
type ReadOptions struct {
	// Limit is the largest content accepted; a longer file is an error.
	Limit int64
	// Follow lets the last path component be a symbolic link (:include:
	// files); without it a link is refused with ELOOP, as O_NOFOLLOW
	// does (.forward files).
	Follow bool
}

// File is a file read with a user's rights: its content and the owner,
// group and permission bits fstat(2) reported on the descriptor that was
// read, so the caller's ownership checks concern the very file read.
type File struct {
	Data     []byte
	UID, GID uint32
	Perm     os.FileMode
}

// ReadFile reads path with creds (on a credentialed thread when root, else
// in a short-lived child), as local(8) opens
// .forward and :include: files with the user's rights (local(8) "SECURITY";
// Postfix's open_as()). Only regular files are read; the open never
// blocks (a FIFO is refused, not waited for). An error from open(2) keeps
// its errno, so errors.Is(err, os.ErrNotExist) tells a missing file.
func ReadFile(ctx context.Context, self string, creds Creds, path string, opt ReadOptions) (File, error) {
	return readFileIn(ctx, nil, self, creds, path, opt)
}

// readFileIn is ReadFile whose credentialed thread, when root, comes from
// pool (nil: a new thread).
func readFileIn(ctx context.Context, pool *threadPool, self string, creds Creds, path string, opt ReadOptions) (File, error) {
	w := wireJob{Job: Job{Kind: kindRead, Path: path}, Limit: opt.Limit, Follow: opt.Follow}
	if err := w.validate(); err != nil {
		return File{}, childFailed(err)
	}
	if os.Geteuid() == 0 {
		// As for mailboxes, a credentialed thread costs far less than a
		// child (deliverOnThread).
		r := readOnThread(pool, creds, w)
		if !r.OK {
			return File{}, r.err()
		}
		return fileOf(r), nil
	}
	r, err := runChild(ctx, self, creds, w, nil)
	if err != nil {
		return File{}, err
	}
	return fileOf(r), nil
}

func fileOf(r wireResult) File {
	return File{Data: r.Data, UID: r.FileUID, GID: r.FileGID, Perm: os.FileMode(r.FileMode & 0o777)}
}

// childRead is the child's side of ReadFile.
func childRead(w wireJob) wireResult {
	flags := os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_CLOEXEC
	if !w.Follow {
		flags |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(w.Path, flags, 0)
	if err != nil {
		return failure(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return failure(fmt.Errorf("fstat %s: %w", w.Path, err))
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return failure(fmt.Errorf("file %s is not a regular file", w.Path))
	}
	data, err := io.ReadAll(io.LimitReader(f, w.Limit+1))
	if err != nil {
		return failure(fmt.Errorf("read %s: %w", w.Path, err))
	}
	if int64(len(data)) > w.Limit {
		return failure(errors.New("file " + w.Path + " is larger than " + fmt.Sprint(w.Limit) + " bytes"))
	}
	return wireResult{OK: true, Path: w.Path, Data: data, FileUID: st.Uid, FileGID: st.Gid, FileMode: st.Mode & 0o7777}
}

// Failed reports whether err says that the child or the executor could
// not do the work at all (it could not run, crashed, was unreachable),
// rather than the mailbox's or the file's own failure: a .forward or
// :include: file that could not be read for that reason defers the
// recipient; it is neither skipped nor a configuration error.
func Failed(err error) bool {
	var de *delivery.Error
	return errors.As(err, &de) && strings.HasPrefix(de.Text, childFailedPrefix)
}
