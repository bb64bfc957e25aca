package qmgr

import (
	"slices"
	"strings"
	"time"

	"moat/internal/queue"
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
	if err := m.queueNotice(msg, items); err != nil {
		m.log.Warning("%s: sender non-delivery notification: %v", msg.ID, err)
		return false
	}
	ok := true
	for _, it := range items {
		if !m.record(msg, it.index, it.res, active) {
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

// queueNotice queues the notices a bounce makes, as Postfix's bounce(8)
// does (bounce_notify_service.c): an RFC 3464 report to the sender, from
// the null sender so that it can never bounce in turn (RFC 5321 section
// 4.5.5), for the recipients whose NOTIFY asks for one, plus a header-only
// copy to bounce_notice_recipient when notify_classes has "bounce". A
// bounce of mail from the null sender is not answered to anyone but the
// postmaster (2bounce_notice_recipient, when notify_classes has
// "2bounce"), and a failed postmaster notice (from double_bounce_sender)
// is dropped: neither can loop. The notices go through the queue, so a
// remote sender's leaves through the smtp agent. A notice that cannot be
// queued is an error: the recipients stay unsettled and bounce again at
// the next run, so a notice queued before the failure may be sent twice,
// never lost.
func (m *Manager) queueNotice(msg *queue.Message, items []bounceItem) error {
	env := &msg.Envelope
	// Recipients finish in whatever order their deliveries end; the
	// report lists them in the envelope's order, so it reads the same
	// every time.
	items = slices.Clone(items)
	slices.SortStableFunc(items, func(a, b bounceItem) int { return a.index - b.index })
	d := &m.set.dsn
	switch {
	case strings.EqualFold(env.Sender, d.doubleBounce):
		m.agents.bounce.Warning("%s: undeliverable postmaster notification discarded", msg.ID)
		return nil
	case env.Sender == "":
		if !d.classes["2bounce"] || d.twoBounceRcpt == "" {
			return nil
		}
		return m.notice(msg, items, dsnNotice{to: d.twoBounceRcpt, postmaster: true},
			d.doubleBounce, "postmaster non-delivery notification")
	}
	var want []bounceItem
	for _, it := range items {
		if wantsNotice(env.Recipients[it.index].Notify) {
			want = append(want, it)
		}
	}
	if len(want) > 0 {
		if err := m.notice(msg, want, dsnNotice{to: env.Sender}, "", "sender non-delivery notification"); err != nil {
			return err
		}
	}
	if d.classes["bounce"] && d.bounceRcpt != "" {
		return m.notice(msg, items, dsnNotice{to: d.bounceRcpt, postmaster: true, headersOnly: true},
			d.doubleBounce, "postmaster non-delivery notification")
	}
	return nil
}

// notice builds one report and queues it from sender to n.to.
func (m *Manager) notice(msg *queue.Message, items []bounceItem, n dsnNotice, sender, kind string) error {
	content, err := m.buildDSN(msg.ID, &msg.Envelope, msg.Content(), items, n, nil)
	if err != nil {
		return err
	}
	return m.commitNotice(msg.ID, sender, n.to, kind, content)
}
