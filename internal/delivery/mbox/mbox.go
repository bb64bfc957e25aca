// Package mbox appends one message to a UNIX mbox file the way Postfix's
// local(8) does for mail_spool_directory, home_mailbox and /file targets:
// a "From sender date" line, ">From " quoting, a blank line after the
// message, the file locked (fcntl and/or a dot-lock) while it grows, fsynced
// before success, and truncated back on any failure so a reader never sees
// half a message.
package mbox

import (
	"errors"
	"io"
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
}

// Deliver appends msg (lines ending in CRLF, as queued) to the mbox file
// at path. Every failure is a *delivery.Error; the file is then as before.
func Deliver(path string, msg io.Reader, opts Options) error {
	return &delivery.Error{DSN: "4.3.0", Text: "mbox: not implemented yet", Err: errors.ErrUnsupported}
}
