package master

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// PIDFile is where the running master's process ID is kept, relative to
// queue_directory: Postfix's place (postfix-script reads
// $queue_directory/pid/master.pid), so admins' scripts and monitoring that
// read it keep working.
const PIDFile = "pid/master.pid"

// ErrRunning means another master holds the PID file lock.
var ErrRunning = errors.New("the Postfix mail system is already running")

// pidLock is the master's hold on its PID file. The flock(2) lock, not the
// file's existence, says a master is running: a file left by a crash
// (SIGKILL, power loss) is not locked and does not stop the next start.
type pidLock struct {
	f    *os.File
	path string
}

// lockPIDFile creates (or takes over a stale) PID file, locks it and writes
// pid in Postfix's format: right-aligned in sizeof(unsigned long)*4 columns
// (32 on 64-bit systems) and a newline, as master.c writes it.
//
// The lock is taken on the file at the path before anything is written,
// and the content is written with one write(2) after truncation, so a
// reader that checks the lock first (Status) never trusts a half-written
// file. Re-checking the inode after locking closes the race with a master
// that removes its file while exiting.
func lockPIDFile(path string, pid int) (*pidLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create PID directory: %w", err)
	}
	for range 10 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open lock file %s: %w", path, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, ErrRunning
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		same, err := sameFile(f, path)
		if err != nil {
			f.Close()
			return nil, err
		}
		if !same {
			f.Close() // an exiting master removed it under us; start over
			continue
		}
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, fmt.Errorf("cannot update lock file %s: %w", path, err)
		}
		if _, err := f.WriteAt([]byte(FormatPID(pid)), 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("cannot update lock file %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("cannot update lock file %s: %w", path, err)
		}
		return &pidLock{f: f, path: path}, nil
	}
	return nil, fmt.Errorf("lock %s: the file keeps being replaced", path)
}

// FormatPID is the PID file's content (master.c: "%*lu\n" with width
// sizeof(unsigned long) * 4).
func FormatPID(pid int) string {
	return fmt.Sprintf("%*d\n", strconv.IntSize/2, pid)
}

func sameFile(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	b, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	return os.SameFile(a, b), nil
}

// release removes the file and drops the lock, in that order, so that a
// starter never sees a locked file without a master behind it.
func (p *pidLock) release() error {
	err := os.Remove(p.path)
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Status reports the master that holds the PID file at path (Postfix's
// `postfix status` and `master -t`): its PID and true while one runs;
// 0 and false when the file is missing or not locked (a crashed master's
// leftover).
func Status(path string) (int, bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		return 0, false, nil // nobody holds it: stale
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return 0, false, fmt.Errorf("lock %s: %w", path, err)
	}
	buf := make([]byte, 128)
	n, err := f.ReadAt(buf, 0)
	if n == 0 && err != nil && !errors.Is(err, io.EOF) {
		return 0, true, fmt.Errorf("read %s: %w", path, err)
	}
	pid, perr := ParsePID(buf[:n])
	if perr != nil {
		// Locked but not written yet: a master is starting.
		return 0, true, fmt.Errorf("%s: %w", path, perr)
	}
	return pid, true, nil
}

// ParsePID reads the PID file's first line as postfix-script does
// (`sed 1q pid/master.pid`): surrounding blanks allowed, one positive
// decimal number.
func ParsePID(b []byte) (int, error) {
	line, _, _ := strings.Cut(string(b), "\n")
	s := strings.TrimSpace(line)
	if s == "" {
		return 0, errors.New("empty PID file")
	}
	if len(s) > 19 {
		return 0, fmt.Errorf("bad PID %q", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad PID %q", s)
		}
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad PID %q", s)
	}
	return pid, nil
}
