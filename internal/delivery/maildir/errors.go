package maildir

import (
	"fmt"

	"moat/internal/delivery"
)

// createError is local(8)'s failure to create the tmp file or link it
// into new/: deferred (4.2.0) unless the errno says otherwise. Postfix
// defers even EACCES and ENOTDIR here: a mailbox the admin has not set up
// yet, or set up wrong, is fixed by the admin, and the mail then arrives.
func createError(path string, err error) *delivery.Error {
	return &delivery.Error{
		DSN:  delivery.ErrnoDSN(err, "4.2.0"),
		Text: fmt.Sprintf("maildir delivery failed: create maildir file %s: %s", path, delivery.Strerror(err)),
		Err:  err,
	}
}

// writeError is mail_copy()'s "error writing message": 5.3.0 unless the
// errno maps to something more specific (disk full, quota, size limit).
func writeError(err error) *delivery.Error {
	return &delivery.Error{
		DSN:  delivery.ErrnoDSN(err, "5.3.0"),
		Text: "maildir delivery failed: error writing message: " + delivery.Strerror(err),
		Err:  err,
	}
}

// readError is a failure reading the queued message. Postfix bounces these
// (5.3.0) unless EAGAIN/ESTALE; moat defers (4.3.0): the queue file is
// moat's own storage, so a read failure is a local fault and the message
// is still safe in the queue for the next attempt.
func readError(err error) *delivery.Error {
	return &delivery.Error{
		DSN:  "4.3.0",
		Text: "maildir delivery failed: error reading message: " + delivery.Strerror(err),
		Err:  err,
	}
}
