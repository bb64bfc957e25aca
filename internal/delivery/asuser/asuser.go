// Package asuser runs one mailbox delivery or one command with a
// recipient's credentials in a short-lived child process, so that no
// delivery ever writes a mailbox or runs a user's command as root
// (local(8) "SECURITY", ../shared/DESIGN.md "Privilege separation").
//
// Postfix's local(8) and virtual(8) switch their effective uid and gid
// around each write (set_eugid()) inside a process that can switch back
// to root. moat instead starts a child whose real, effective and saved
// ids are the recipient's, so a fault in the mailbox code cannot regain
// root. The child is `moat delivery-child` (ChildMain): the job arrives on
// descriptor 3, the message on standard input, and the outcome goes back
// on descriptor 4. A final "commit" line on the job pipe tells the end of
// the message from a parent that died mid-stream.
//
// The queue manager that hosts the delivery agents runs as mail_owner, so
// it cannot start such children: a Runner built with the socket of the
// root executor (Serve, master.cf's "local" service on private/local)
// sends each request there instead, streaming the message, and gets the
// same outcome back; a Runner without a socket forks here. ReadFile reads
// a file with a user's rights the same way (local(8)'s .forward and
// :include: files).
//
// A process that is not root cannot change identity: it runs the child
// and the commands as itself, which is what a development set-up wants.
// Commands never run as uid 0 (Run refuses); mailbox writes for uid 0
// (root's own mailbox) do, as in Postfix.
package asuser

import (
	"io"
	"time"

	"moat/internal/delivery/maildir"
	"moat/internal/delivery/mbox"
)

// ChildVerb is the hidden moat verb the child runs under
// (`moat delivery-child`); cmd/moat dispatches it to ChildMain.
const ChildVerb = "delivery-child"

// Creds is the identity a delivery runs as.
type Creds struct {
	UID, GID uint32
	// Groups are the supplementary groups (e.g. the mail spool's group,
	// for dot-lock files in /var/mail).
	Groups []uint32
	// User and Home are the account's name and home directory, for logs
	// and for commands' $USER/$HOME.
	User, Home string
}

// Kind says what a Job writes.
type Kind string

// The kinds of mailbox a Job writes.
const (
	KindMaildir Kind = "maildir" // Path is the Maildir directory
	KindMbox    Kind = "mbox"    // Path is the mbox file (also /file targets)
)

// Job is one mailbox write done by the child.
type Job struct {
	Kind    Kind
	Path    string
	Maildir maildir.Options // for KindMaildir
	Mbox    mbox.Options    // for KindMbox
}

// Command is a command run with a recipient's credentials: local(8)'s
// "|command" aliases and .forward lines and mailbox_command, pipe(8)'s
// argv=.
type Command struct {
	Creds Creds
	// Argv is executed directly; local(8) passes ["/bin/sh", "-c", cmd].
	Argv []string
	// Env is the complete environment (nothing is inherited).
	Env []string
	// Dir is the working directory ("" = "/").
	Dir string
	// Stdin is the message as the command reads it.
	Stdin io.Reader
	// TimeLimit kills the command (its whole process group) when it runs
	// longer (command_time_limit, <transport>_time_limit).
	TimeLimit time.Duration
	// OutputLimit bounds the bytes of standard output and error kept for
	// the bounce or defer reason; the rest is read and dropped.
	OutputLimit int
}

// CommandResult is how a Command ended.
type CommandResult struct {
	// Status is the exit status when the command exited.
	Status int
	// Signal is the signal that killed it, 0 if none.
	Signal int
	// TimedOut says TimeLimit killed it.
	TimedOut bool
	// Output is the first OutputLimit bytes of its standard output and
	// error.
	Output string
	// Err is set when the command could not be started at all.
	Err error
}
