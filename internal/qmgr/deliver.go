package qmgr

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"moat/internal/maillog"
	"moat/internal/queue"
	"moat/internal/resolve"
)

// result is one recipient's delivery attempt.
type result struct {
	state  queue.RcptState // RcptDelivered, RcptBounced or RcptDeferred
	dsn    string
	reason string
	relay  string
	// handoff is when an agent took the recipient; zero when the queue
	// manager settled it itself (delays= b then runs to the end).
	handoff time.Time
	done    time.Time
	log     *maillog.Logger // the daemon that logs it, as in Postfix
	// replayable: repeating the delivery has no effect (a keyed Maildir
	// file), so its record need not be fsynced (queue.RecipientUpdate).
	replayable bool
}

// status is the word Postfix logs after "status=".
func (r result) status() string {
	switch r.state {
	case queue.RcptDelivered:
		return "sent"
	case queue.RcptBounced:
		return "bounced"
	default:
		return "deferred"
	}
}

// process takes one message from its queue into active/, tries every
// unsettled recipient, and leaves the message removed (all settled),
// in deferred/ (some deferred) or, when ctx ended part way, back in
// incoming/ for the next run.
func (m *Manager) process(ctx context.Context, j job) {
	defer m.release(j.id)
	id := j.id
	if ctx.Err() != nil {
		return // shutting down: leave it where it is
	}
	if err := m.q.Move(id, j.from, queue.Active); err != nil {
		if !errors.Is(err, fs.ErrNotExist) { // gone: postsuper -d, or another qmgr
			m.log.Warning("%s: %v", id, err)
		}
		return
	}
	active := m.now()
	msg, err := m.q.Open(queue.Active, id)
	if err != nil {
		// Unreadable now (Recover at the next start moves a damaged file
		// to corrupt/): retry it with the deferred mail.
		m.log.Warning("%s: %v", id, err)
		m.backoff(id, active)
		m.moveOrWarn(id, queue.Active, queue.Deferred)
		return
	}
	defer msg.Close()
	env := &msg.Envelope
	pending := env.Unsettled()
	m.log.Info("%s", maillog.QueueActive(id, env.Sender, env.Size, len(pending)))

	deferred, interrupted := false, false
	var bounced []bounceItem
	for _, i := range pending {
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		r := m.deliver(msg, i)
		if r.state == queue.RcptBounced {
			// Recorded after the notice is queued: a crash in between
			// bounces again (a duplicate notice), never loses it.
			bounced = append(bounced, bounceItem{index: i, res: r})
			continue
		}
		if !m.record(id, i, r, active, env) {
			deferred = true
			continue
		}
		if r.state == queue.RcptDeferred {
			deferred = true
		}
	}
	if len(bounced) > 0 && !m.settleBounces(msg, bounced, active) {
		deferred = true
	}

	switch {
	case interrupted:
		m.moveOrWarn(id, queue.Active, queue.Incoming)
	case deferred:
		m.backoff(id, env.Arrival)
		m.moveOrWarn(id, queue.Active, queue.Deferred)
	default:
		if err := m.q.Remove(queue.Active, id); err != nil {
			m.log.Warning("%s: %v", id, err)
			m.moveOrWarn(id, queue.Active, queue.Deferred)
			return
		}
		m.log.Info("%s", maillog.Removed(id))
	}
}

// record makes recipient i's result durable in the queue file and then logs
// it. If the record cannot be written the result is not logged as final: the
// recipient stays unsettled and is tried again (at worst a duplicate).
func (m *Manager) record(id string, i int, r result, active time.Time, env *queue.Envelope) bool {
	upd := queue.RecipientUpdate{Index: i, State: r.state, Replayable: r.replayable}
	if r.state != queue.RcptDelivered {
		upd.Reason = r.reason
	}
	if err := m.q.UpdateRecipients(queue.Active, id, []queue.RecipientUpdate{upd}); err != nil {
		m.log.Warning("%s: recording the result for <%s>: %v", id, env.Recipients[i].Address, err)
		return false
	}
	m.logResult(id, env, i, r, active)
	return true
}

func (m *Manager) logResult(id string, env *queue.Envelope, i int, r result, active time.Time) {
	r.log.Info("%s", maillog.Delivery(maillog.DeliveryEvent{
		QueueID:    id,
		To:         env.Recipients[i].Address,
		Relay:      r.relay,
		Arrival:    env.Arrival,
		Active:     active,
		Handoff:    r.handoff,
		Done:       r.done,
		Resolution: m.set.resolution,
		DSN:        r.dsn,
		Status:     r.status(),
		Reason:     r.reason,
	}))
}

func (m *Manager) moveOrWarn(id, from, to string) {
	if err := m.q.Move(id, from, to); err != nil {
		m.log.Warning("%s: %v", id, err)
	}
}

// deliver chooses recipient i's transport from its domain's address class
// (ADDRESS_CLASS_README: local_transport, virtual_transport,
// relay_transport, default_transport) and runs its agent.
func (m *Manager) deliver(msg *queue.Message, i int) result {
	addr := msg.Envelope.Recipients[i].Address
	_, domain := splitAddress(addr)
	class, err := m.classify(domain)
	if err != nil {
		m.log.Warning("%s: resolving <%s>: %v", msg.ID, addr, err)
		return m.qmgrResult(queue.RcptDeferred, "4.3.0", "address resolver failure")
	}
	var setting string
	switch class {
	case resolve.Local:
		setting = m.set.localTransport
	case resolve.VirtualAlias:
		// Postfix bounces what virtual_alias_maps did not rewrite
		// ("User unknown in virtual alias table"); moat does not rewrite
		// yet, so the address may well exist: keep the mail.
		return m.qmgrResult(queue.RcptDeferred, "4.3.0",
			"virtual alias rewriting is not available yet in this version of moat")
	case resolve.VirtualMailbox:
		setting = m.set.virtualTransport
	case resolve.RelayDomain:
		setting = m.set.relayTransport
	default:
		setting = m.set.defaultTransport
	}
	rt := parseTransport(setting, domain)
	switch rt.transport {
	case "local":
		return m.deliverLocal(msg, i)
	case "discard":
		return m.discard(rt)
	case "error":
		return m.errorAgent(rt)
	case "retry":
		return m.retryAgent(rt)
	default:
		return m.qmgrResult(queue.RcptDeferred, "4.3.0",
			"delivery via "+rt.transport+" is not available yet in this version of moat")
	}
}

// qmgrResult is a result the queue manager decides without an agent
// (Postfix's qmgr logs these itself, with relay=none).
func (m *Manager) qmgrResult(state queue.RcptState, dsn, reason string) result {
	return result{state: state, dsn: dsn, reason: reason, relay: "none", done: m.now(), log: m.log}
}

// discard is discard(8): every recipient is "sent", with the next hop as
// the reason (optionally led by a DSN code) and relay=none.
func (m *Manager) discard(rt route) result {
	start := m.now()
	dsn, text := splitDSN("2.0.0", rt.nexthop)
	return result{state: queue.RcptDelivered, dsn: dsn, reason: text, relay: "none",
		handoff: start, done: m.now(), log: m.agents.discard}
}

// errorAgent is error(8): every recipient bounces with the next hop as
// the reason (default status 5.0.0).
func (m *Manager) errorAgent(rt route) result {
	start := m.now()
	dsn, text := splitDSN("5.0.0", rt.nexthop)
	state := queue.RcptBounced
	if dsn[0] == '4' {
		state = queue.RcptDeferred
	}
	return result{state: state, dsn: dsn, reason: text, relay: "none",
		handoff: start, done: m.now(), log: m.agents.errorAgent}
}

// retryAgent is retry(8) (error(8) run as "retry"): every recipient is
// deferred with the next hop as the reason (default status 4.0.0).
func (m *Manager) retryAgent(rt route) result {
	start := m.now()
	dsn, text := splitDSN("4.0.0", rt.nexthop)
	return result{state: queue.RcptDeferred, dsn: dsn, reason: text, relay: "none",
		handoff: start, done: m.now(), log: m.agents.retry}
}
