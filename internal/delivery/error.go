package delivery

import (
	"errors"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// Error is a failed mailbox delivery (Maildir, mbox, a file, a command),
// classified the way Postfix's local(8) and virtual(8) classify it, so the
// queue manager can defer or bounce and log the same "status=deferred
// (maildir delivery failed: ...)" text admins and log parsers already know.
type Error struct {
	// DSN is the RFC 3463 enhanced status code, such as "4.3.0" or "5.2.2".
	DSN string
	// Text is the reason as local(8) logs it inside status=...( ).
	Text string
	// Err is the underlying error, for errors.Is (syscall.ENOSPC and so on).
	Err error
}

// Error returns the log text.
func (e *Error) Error() string { return e.Text }

// Unwrap exposes the cause so callers can test for specific errnos.
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the queue manager should defer and retry
// (4.x.x) rather than bounce (5.x.x), per RFC 3463 section 3.1.
func (e *Error) Temporary() bool { return len(e.DSN) > 0 && e.DSN[0] == '4' }

// Status is the word Postfix logs after "status=": "deferred" for a
// temporary failure, "bounced" for a permanent one.
func (e *Error) Status() string {
	if e.Temporary() {
		return "deferred"
	}
	return "bounced"
}

// ErrnoDSN maps an errno to the mailbox DSN detail the way Postfix's
// mbox_dsn() does: EAGAIN/ESTALE are retried (4.2.0), a full file system
// is a system problem (4.3.0), a full mailbox (quota, file size limit) is
// the recipient's problem (5.2.2); anything else gets the caller's default.
//
// moat differs in one place: EIO defers (4.3.0) where Postfix's default
// for a write error bounces (5.3.0). An I/O error is a fault of the
// local disk, not of the message, and retrying loses nothing.
func ErrnoDSN(err error, def string) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return def
	}
	switch errno {
	case syscall.EAGAIN, syscall.ESTALE:
		return "4.2.0"
	case syscall.ENOSPC, syscall.EIO:
		return "4.3.0"
	case syscall.EDQUOT, syscall.EFBIG:
		return "5.2.2"
	}
	return def
}

// Strerror renders err as C's strerror(3) would (%m in Postfix's
// messages): Go's errno texts are glibc's with the first letter lowered.
func Strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = errno
	}
	s := err.Error()
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}
