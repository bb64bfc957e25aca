package qmgr

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"moat/internal/delivery"
	"moat/internal/delivery/maildir"
	"moat/internal/queue"
)

// deliverLocal is the part of local(8) that exists so far: mailbox
// delivery into a Maildir at mail_spool_directory/USER/ when
// mail_spool_directory ends in "/" (postconf(5): "Specify a name ending in /
// for maildir-style delivery"). The other mailbox kinds local(8) chooses
// before that one (mailbox_transport, mailbox_command, home_mailbox) and
// mbox files are deferred with a reason until they exist, so no mail is
// bounced that a later version would deliver.
func (m *Manager) deliverLocal(msg *queue.Message, i int) result {
	handoff := m.now()
	rcpt := msg.Envelope.Recipients[i]
	res := func(state queue.RcptState, dsn, reason string) result {
		return result{state: state, dsn: dsn, reason: reason, relay: "local",
			handoff: handoff, done: m.now(), log: m.agents.local}
	}
	localPart, _ := splitAddress(rcpt.Address)
	user, _ := localUser(localPart, m.set.delimiters)
	if !safeUser(user) {
		return res(queue.RcptBounced, "5.1.1", `unknown user: "`+user+`"`)
	}
	// local(8): a message that already went through this mailbox came
	// back (a forwarding loop); another copy would only go round again.
	seen, err := deliveredTo(msg.Content())
	if err != nil {
		return res(queue.RcptDeferred, "4.3.0", "cannot read the queue file: "+err.Error())
	}
	if slices.Contains(seen, strings.ToLower(rcpt.Address)) {
		return res(queue.RcptBounced, "5.4.6", "mail forwarding loop for "+rcpt.Address)
	}
	notYet := func(what string) result {
		return res(queue.RcptDeferred, "4.3.0", what+" is not available yet in this version of moat")
	}
	switch {
	case m.set.mailboxTransport != "":
		return notYet("delivery via mailbox_transport " + m.set.mailboxTransport)
	case m.set.mailboxCommand != "":
		return notYet("delivery via mailbox_command")
	case m.set.homeMailbox != "":
		return notYet("delivery to home_mailbox")
	case !strings.HasSuffix(m.set.spoolDir, "/"):
		return notYet("mbox delivery to mail_spool_directory (end it with / for Maildir)")
	}
	dir := filepath.Join(m.set.spoolDir, user)
	if link := symlinkIn(dir); link != "" {
		return res(queue.RcptDeferred, "4.3.0",
			"maildir delivery failed: "+link+" is a symbolic link; moat does not yet deliver with the recipient's rights, so it does not follow one")
	}
	opts := maildir.Options{
		ReturnPath: true,
		Sender:     msg.Envelope.Sender,
		// local(8) lowercases Delivered-To, which its loop detection
		// compares.
		Recipient: strings.ToLower(rcpt.Address),
		SizeLimit: m.set.mailboxSizeLimit,
		// A retry after a crash between this delivery and the queue's
		// record of it finds the earlier file instead of adding one.
		Key:     msg.ID + "." + strconv.Itoa(i),
		Arrival: msg.Envelope.Arrival,
	}
	if m.set.origRecipient {
		opts.OrigRecipient = rcpt.Address
	}
	if _, err := maildir.Deliver(dir, msg.Content(), opts); err != nil {
		var me *delivery.Error
		if errors.As(err, &me) {
			state := queue.RcptBounced
			if me.Temporary() {
				state = queue.RcptDeferred
			}
			return res(state, me.DSN, me.Text)
		}
		return res(queue.RcptDeferred, "4.3.0", "maildir delivery failed: "+err.Error())
	}
	r := res(queue.RcptDelivered, "2.0.0", "delivered to maildir")
	r.replayable = true // opts.Key names the file: a retry finds it
	return r
}

// symlinkIn returns the first of dir, dir/tmp, dir/new and dir/cur that is
// a symbolic link, or "". local(8) writes a mailbox with the recipient's
// rights, so a link can only lead where the recipient may write; moat's
// minimal Maildir writer runs with the daemon's, so a link planted in the
// spool could make it write anywhere. The check narrows that hole until
// delivery runs as the recipient (issue 5); a link swapped in between the
// check and the write is not caught.
func symlinkIn(dir string) string {
	for _, p := range []string{dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "new"), filepath.Join(dir, "cur")} {
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return p
		}
	}
	return ""
}
