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
	body := []string{"Your message could not be delivered to one or more recipients.", "The mail system said:", ""}
	body = append(body, lines...)
	body = append(body, "", "Queue ID: "+msg.ID)
	if env.MessageID != "" {
		body = append(body, "Message-ID: "+env.MessageID)
	}
	return m.sendNotice(msg.ID, env.Sender, "Undelivered Mail Returned to Sender", "sender non-delivery notification", body)
}

// sendNotice commits a plain-text notice from MAILER-DAEMON to a local
// sender into incoming/, with the null sender so that it can never bounce
// in turn (RFC 5321 section 4.5.5), and logs it as Postfix's bounce(8)
// does ("ID: KIND: NEWID").
func (m *Manager) sendNotice(id, to, subject, kind string, body []string) error {
	now := m.now()
	host := m.set.myhostname
	var b strings.Builder
	// Every field comes from the envelope or a reason text: keep CR and LF
	// out so none can add a header or end the header block.
	line := func(s string) { b.WriteString(oneLine(s) + "\r\n") }
	line("From: MAILER-DAEMON@" + host + " (Mail Delivery System)")
	line("To: <" + to + ">")
	line("Subject: " + subject)
	line("Date: " + now.Format(time.RFC1123Z))
	line(fmt.Sprintf("Message-ID: <%d.%s@%s>", now.UnixNano(), id, host))
	line("Auto-Submitted: auto-replied")
	line("MIME-Version: 1.0")
	line("Content-Type: text/plain; charset=utf-8")
	line("Content-Transfer-Encoding: 8bit")
	line("")
	line("This is the mail system at host " + host + ".")
	line("")
	for _, l := range body {
		line(l)
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
		Recipients: []queue.Recipient{{Address: to}},
		Arrival:    now,
	}
	nid, err := w.Commit()
	if err != nil {
		return err
	}
	m.agents.bounce.Info("%s: %s: %s", id, kind, nid)
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
