package qmgr

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"moat/internal/queue"
	"moat/internal/smtp"
)

// wantsDelayNotice reports whether a deferral of this recipient may be
// reported to the sender: when its NOTIFY list has DELAY, or when it gave
// none (RFC 3461 section 4.1 leaves that to the server; Postfix warns).
func wantsDelayNotice(n smtp.Notify) bool {
	if n == 0 {
		return true
	}
	return n&smtp.NotifyNever == 0 && n&smtp.NotifyDelay != 0
}

// warnDelayed sends the delay warning of a message whose recipients in
// items were deferred in this run, once the message has waited
// delay_warning_time (postconf(5)): an RFC 3464 report with Action:
// delayed to the sender for the recipients whose NOTIFY allows it, and a
// header-only copy to delay_notice_recipient when notify_classes has
// "delay", as Postfix's bounce(8) warn service does. The message is then
// marked warned in its queue file (queue.MarkWarned, Postfix's WARN
// record), so one warning goes out per message, across restarts; a crash
// between the two repeats the warning, never loses it. Mail from the
// null sender warns no one but the postmaster, and postmaster notices
// (from double_bounce_sender) warn no one, so nothing loops. A warning
// that cannot be queued is logged and tried again at the next run.
func (m *Manager) warnDelayed(msg *queue.Message, items []bounceItem) {
	env := &msg.Envelope
	wait := m.set.delayWarn
	now := m.now()
	if wait <= 0 || !env.Warned.IsZero() || now.Sub(env.Arrival) < wait || len(items) == 0 {
		return
	}
	d := &m.set.dsn
	if !strings.EqualFold(env.Sender, d.doubleBounce) {
		var want []bounceItem
		for _, it := range items {
			if env.Sender != "" && wantsDelayNotice(env.Recipients[it.index].Notify) {
				want = append(want, it)
			}
		}
		if len(want) > 0 {
			n := dsnNotice{kind: dsnDelay, to: env.Sender, headersOnly: true}
			if err := m.notice(msg, want, n, "", "sender delay notification"); err != nil {
				m.log.Warning("%s: sender delay notification: %v", msg.ID, err)
				return
			}
		}
		if d.classes["delay"] && d.delayRcpt != "" {
			n := dsnNotice{kind: dsnDelay, to: d.delayRcpt, postmaster: true, headersOnly: true}
			if err := m.notice(msg, items, n, d.doubleBounce, "postmaster delay notification"); err != nil {
				m.log.Warning("%s: postmaster delay notification: %v", msg.ID, err)
				return
			}
		}
	}
	if err := msg.MarkWarned(now); err != nil {
		m.log.Warning("%s: recording the delay warning: %v", msg.ID, err)
		return
	}
	env.Warned = now
}

// delayText is Postfix's default delay_template text after "This is the
// mail system at host $myhostname." (bounce(5), postconf -b), with
// $delay_warning_time_hours and $maximal_queue_lifetime_days filled in
// (whole hours and days, rounded down, as bounce_template.c does).
func (m *Manager) delayText() []string {
	return slices.Concat([]string{
		"####################################################################",
		"# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
		"####################################################################",
		"",
		fmt.Sprintf("Your message could not be delivered for more than %d hour(s).", int64(m.set.delayWarn/time.Hour)),
		fmt.Sprintf("It will be retried until it is %d day(s) old.", int64(m.set.maxLifetime/(24*time.Hour))),
		"",
	}, signOff)
}

// retryUntil is the Will-Retry-Until of a delay report (RFC 3464 section
// 2.3.9): when the message's queue lifetime ends.
func (m *Manager) retryUntil(env *queue.Envelope) time.Time {
	life := m.set.maxLifetime
	if env.Sender == "" {
		life = m.set.bounceLifetime
	}
	return env.Arrival.Add(life)
}
