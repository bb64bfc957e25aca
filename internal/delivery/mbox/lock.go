package mbox

import (
	"errors"
	"math/rand/v2"
	"os"
	"syscall"
	"time"

	"moat/internal/delivery"
)

// fOFDSetLK is Linux's F_OFD_SETLK (fcntl(2), value 37 on every Linux
// architecture; the syscall package does not name it). An open file
// description lock conflicts with the classic fcntl locks other mail
// programs take, as required, and also between two opens in one process,
// which classic fcntl locks do not.
const fOFDSetLK = 37

// lockFile takes the kernel locks mailbox_delivery_lock asks for, each
// tried LockAttempts times LockDelay apart (deliver_flock(3)).
func lockFile(f *os.File, opts Options) error {
	fd := int(f.Fd())
	if opts.Flock {
		if err := retry(opts, func() error { return syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB) }); err != nil {
			return lockError(opts, err)
		}
	}
	if opts.Fcntl {
		lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
		setlk := func() error {
			err := syscall.FcntlFlock(uintptr(fd), fOFDSetLK, &lk)
			if errors.Is(err, syscall.EINVAL) {
				// A kernel before 3.15: classic process-wide locks.
				err = syscall.FcntlFlock(uintptr(fd), syscall.F_SETLK, &lk)
			}
			return err
		}
		if err := retry(opts, setlk); err != nil {
			return lockError(opts, err)
		}
	}
	return nil
}

// retry calls try until it succeeds, fails with something other than
// "busy", or LockAttempts run out.
func retry(opts Options, try func() error) error {
	var err error
	for i := 1; i <= opts.LockAttempts; i++ {
		if err = try(); err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if i < opts.LockAttempts {
			time.Sleep(opts.LockDelay)
		}
	}
	if errors.Is(err, syscall.EACCES) {
		err = syscall.EAGAIN // F_SETLK's other "held by another"
	}
	return err
}

func lockError(opts Options, err error) *delivery.Error {
	return &delivery.Error{DSN: delivery.ErrnoDSN(err, opts.DefaultDSN), Text: "unable to lock for exclusive access: " + delivery.Strerror(err), Err: err}
}

// dotLock creates PATH.lock with O_CREAT|O_EXCL (dot_lockfile(3)): tried
// LockAttempts times, a lock older than StaleLockTime removed as left by a
// crash, the wait between tries LockDelay ± half (rand_sleep()) so two
// waiters do not retry in step. held is false when the lock could not be
// made but DotLockMayFail says to go on without it.
func dotLock(path string, opts Options) (held bool, err error) {
	lock := path + ".lock"
	var lerr error
	for i := 1; ; i++ {
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0)
		if err == nil {
			f.Close()
			return true, nil
		}
		lerr = err
		if i >= opts.LockAttempts || !errors.Is(err, syscall.EEXIST) {
			break
		}
		var st syscall.Stat_t
		if syscall.Stat(lock, &st) == nil {
			ctime := time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
			if time.Since(ctime) > opts.StaleLockTime {
				if err := os.Remove(lock); err != nil && !errors.Is(err, syscall.ENOENT) {
					lerr = err
					break
				}
				continue
			}
		}
		d := opts.LockDelay/2 + time.Duration(rand.Int64N(int64(opts.LockDelay)+1))
		time.Sleep(d)
	}
	text := "unable to create lock file " + lock + ": " + delivery.Strerror(lerr)
	if errors.Is(lerr, syscall.EEXIST) {
		return false, &delivery.Error{DSN: "4.2.0", Text: text, Err: lerr}
	}
	if opts.DotLockMayFail {
		return false, nil
	}
	return false, &delivery.Error{DSN: delivery.ErrnoDSN(lerr, opts.DefaultDSN), Text: text, Err: lerr}
}

// dotUnlock removes the lock file; a lock someone else already broke is
// no error (dot_unlockfile()).
func dotUnlock(path string) {
	_ = os.Remove(path + ".lock")
}
