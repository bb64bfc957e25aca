package qmgr

import (
	"fmt"
	"strings"
	"time"

	"moat/internal/queue"
	"moat/internal/resolve"
	"moat/internal/smtp"
)

// bounceItem is a recipient that failed permanently, waiting for its
// notice to be queued before its state is recorded.
type bounceItem struct {
	index int
	res   result
}

// settleBounces queues one non-delivery notice for the bounced recipients
// that want one, then records them bounced and logs them. A notice that
// cannot be queued leaves the recipients unsettled (retried, not lost). It
// reports whether every recipient was recorded.
func (m *Manager) settleBounces(msg *queue.Message, items []bounceItem, active time.Time) bool {
	env := &msg.Envelope
	if err := m.queueNotice(msg, items); err != nil {
		m.log.Warning("%s: sender non-delivery notification: %v", msg.ID, err)
		return false
	}
	ok := true
	for _, it := range items {
		if !m.record(msg.ID, it.index, it.res, active, env) {
			ok = false
		}
	}
	return ok
}

// wantsNotice reports whether a bounce of this recipient is reported to
// the sender: not when it asked NOTIFY=NEVER, nor when its NOTIFY list
// leaves out FAILURE (RFC 3461 section 4.1); without NOTIFY, failures are
// reported.
func wantsNotice(n smtp.Notify) bool {
	if n == 0 {
		return true
	}
	return n&smtp.NotifyNever == 0 && n&smtp.NotifyFailure != 0
}

// queueNotice commits a short plain-text notice from MAILER-DAEMON to the
// sender into incoming/, with the null sender so that it can never bounce
// in turn (RFC 5321 section 4.5.5). It does so only for a sender in a local
// domain: full RFC 3464 reports, and notices to remote senders, come with
// outbound delivery (a remote notice could not leave yet, and backscatter
// to forged senders is what a half-built bounce path would send).
func (m *Manager) queueNotice(msg *queue.Message, items []bounceItem) error {
	env := &msg.Envelope
	if env.Sender == "" {
		return nil
	}
	_, domain := splitAddress(env.Sender)
	class, err := m.classify(domain)
	if err != nil {
		return fmt.Errorf("resolving <%s>: %w", env.Sender, err)
	}
	if class != resolve.Local {
		return nil
	}
	var lines []string
	for _, it := range items {
		r := env.Recipients[it.index]
		if wantsNotice(r.Notify) {
			lines = append(lines, "<"+r.Address+">: "+it.res.reason)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	now := m.now()
	host := m.set.myhostname
	var b strings.Builder
	// Every field comes from the envelope or a reason text: keep CR and LF
	// out so none can add a header or end the header block.
	hdr := func(s string) { b.WriteString(oneLine(s) + "\r\n") }
	hdr("From: MAILER-DAEMON@" + host + " (Mail Delivery System)")
	hdr("To: <" + env.Sender + ">")
	hdr("Subject: Undelivered Mail Returned to Sender")
	hdr("Date: " + now.Format(time.RFC1123Z))
	hdr(fmt.Sprintf("Message-ID: <%d.%s@%s>", now.UnixNano(), msg.ID, host))
	hdr("Auto-Submitted: auto-replied")
	hdr("MIME-Version: 1.0")
	hdr("Content-Type: text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding: 8bit")
	hdr("")
	hdr("This is the mail system at host " + host + ".")
	hdr("")
	hdr("Your message could not be delivered to one or more recipients.")
	hdr("The mail system said:")
	hdr("")
	for _, l := range lines {
		hdr(l)
	}
	hdr("")
	hdr("Queue ID: " + msg.ID)
	if env.MessageID != "" {
		hdr("Message-ID: " + env.MessageID)
	}

	w, err := m.q.NewMessage()
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := w.WriteString(b.String()); err != nil {
		return err
	}
	w.Envelope = queue.Envelope{
		Recipients: []queue.Recipient{{Address: env.Sender}},
		Arrival:    now,
	}
	id, err := w.Commit()
	if err != nil {
		return err
	}
	m.agents.bounce.Info("%s: sender non-delivery notification: %s", msg.ID, id)
	m.Wake()
	return nil
}

// oneLine replaces CR and LF with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
