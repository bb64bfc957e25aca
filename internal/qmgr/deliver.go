package qmgr

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"time"

	"moat/internal/delivery"
	"moat/internal/maillog"
	"moat/internal/queue"
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
	// commit, when set, completes the delivery (delivery.Result.Commit):
	// called after the slot is freed, before the result is recorded.
	commit func(context.Context) error
	// pass, when set, is an agent's pass-on ("transport:nexthop",
	// delivery.Result.Pass) with the address to use (passAddr, "" for the
	// queued one).
	pass, passAddr string
	// quiet: recorded without a log line of its own (expired recipients,
	// whose message gets one line).
	quiet bool
	// remoteMTA and diagnostic are the DSN's Remote-MTA and
	// Diagnostic-Code (delivery.Result), "" when the agent has none.
	remoteMTA, diagnostic string
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
	parked := false
	defer func() {
		if !parked {
			m.release(j.id)
		}
	}()
	id := j.id
	resumed := j.from == queue.Active // a parked message
	if ctx.Err() != nil {
		if resumed {
			if msg := m.takeKept(j); msg != nil {
				msg.Close()
			}
			m.moveOrWarn(id, queue.Active, queue.Incoming)
		}
		return // shutting down: leave it where it is
	}
	if !resumed {
		if err := m.q.Move(id, j.from, queue.Active); err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // gone: postsuper -d, or another qmgr
				m.log.Warning("%s: %v", id, err)
			}
			return
		}
	}
	active := m.now()
	msg, err := m.reopen(j)
	if resumed && errors.Is(err, fs.ErrNotExist) {
		return // deleted while parked
	}
	if err != nil {
		// Unreadable now (Recover at the next start moves a damaged file
		// to corrupt/): retry it with the deferred mail.
		m.log.Warning("%s: %v", id, err)
		m.backoff(id, active)
		m.moveOrWarn(id, queue.Active, queue.Deferred)
		return
	}
	defer func() {
		if !parked {
			msg.Close()
		}
	}()
	env := &msg.Envelope
	pending := env.Unsettled()
	if resumed {
		pending = slices.DeleteFunc(pending, func(i int) bool { return !slices.Contains(j.only, i) })
	} else {
		m.log.Info("%s", maillog.QueueActive(id, env.Sender, env.Size, len(pending)))
	}
	if env.Flags&queue.FlagVerify != 0 {
		m.verify(ctx, msg, pending, active) // sendmail -bv: a report, no delivery
		return
	}

	run := &attempt{m: m, msg: msg, active: active}
	run.deliverAll(ctx, pending)
	if run.interrupted {
		m.moveOrWarn(id, queue.Active, queue.Incoming)
		return
	}
	if len(run.deferred) > 0 && m.expired(env) {
		run.expire()
	}
	if len(run.deferred) > 0 {
		m.warnDelayed(msg, run.deferred)
	}
	if len(run.bounced) > 0 && !m.settleBounces(msg, run.bounced, active) {
		run.unrecorded = true
	}
	carry := j.carry || len(run.deferred) > 0 || run.unrecorded
	if len(run.parked) > 0 {
		// Stays in active/ and claimed until the limiter calls back.
		parked = true
		m.parkJob(job{id: id, from: queue.Active, only: run.parked, carry: carry, msg: msg})
		return
	}
	switch {
	case carry:
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

// expired reports whether a message has been queued longer than
// maximal_queue_lifetime (bounce_queue_lifetime for mail from the null
// sender): its deferred recipients are then returned to the sender. A
// lifetime of 0 returns mail after the first failed attempt (postconf(5)).
func (m *Manager) expired(env *queue.Envelope) bool {
	life := m.set.maxLifetime
	if env.Sender == "" {
		life = m.set.bounceLifetime
	}
	return m.now().Sub(env.Arrival) >= life
}

// attempt is one delivery run over a message's unsettled recipients.
type attempt struct {
	m      *Manager
	msg    *queue.Message
	active time.Time
	// bounced wait for their notice before they are recorded;
	// deferred were recorded deferred in this run.
	bounced  []bounceItem
	deferred []bounceItem
	// interrupted: ctx ended before every recipient was tried.
	interrupted bool
	// unrecorded: a result could not be written to the queue file; the
	// recipient stays unsettled and the message is retried.
	unrecorded bool
	// parked are recipients whose destination was too busy to wait for
	// (limiter.acquire): the message resumes with them later. Once one
	// request parks, the rest of the run parks too.
	parked []int
}

// maxPasses bounds how often one recipient is passed from agent to agent
// (local(8)'s mailbox_transport, fallback_transport) in one run, so that
// two transports passing to each other cannot loop.
const maxPasses = 3

// deliverAll routes the recipients, groups those with the same transport
// and next hop into requests of at most the transport's recipient limit,
// and runs each request.
func (a *attempt) deliverAll(ctx context.Context, pending []int) {
	m := a.m
	env := &a.msg.Envelope
	var order []route
	groups := map[route][]int{}
	for _, i := range pending {
		rt, err := m.router.route(env, env.Recipients[i].Address)
		if err != nil {
			a.settle(i, m.routeFailure(a.msg.ID, env.Recipients[i].Address, err))
			continue
		}
		if _, ok := groups[rt]; !ok {
			order = append(order, rt)
		}
		groups[rt] = append(groups[rt], i)
	}
	for _, k := range order {
		idxs := groups[k]
		t := m.transports[k.transport]
		size := 1
		if t != nil {
			size = t.rcptLimit
		}
		for len(idxs) > 0 {
			if ctx.Err() != nil {
				a.interrupted = true
				return
			}
			n := min(size, len(idxs))
			a.request(ctx, k, idxs[:n], nil, 0)
			idxs = idxs[n:]
		}
	}
}

// routeFailure is the queue manager's own verdict on a recipient it could
// not route: a lookup failure defers it.
func (m *Manager) routeFailure(id, addr string, err error) result {
	m.log.Warning("%s: resolving <%s>: %v", id, addr, err)
	return m.qmgrResult(queue.RcptDeferred, "4.3.0", "address resolver failure")
}

// request delivers recipients idxs through rt. addrs, when not nil, are
// the addresses to deliver to instead of the queued ones (an agent's
// pass-on); passes counts the pass-ons so far.
func (a *attempt) request(ctx context.Context, rt route, idxs []int, addrs map[int]string, passes int) {
	m := a.m
	if len(a.parked) > 0 {
		a.parked = append(a.parked, idxs...)
		return
	}
	t := m.transports[rt.transport]
	if t == nil {
		for _, i := range idxs {
			a.settle(i, m.qmgrResult(queue.RcptDeferred, "4.3.0", "mail transport unavailable"))
		}
		return
	}
	results, parked := m.runTransport(ctx, t, rt, a.msg, idxs, addrs)
	if parked && ctx.Err() != nil {
		a.interrupted = true
		return
	}
	if parked {
		a.parked = append(a.parked, idxs...)
		return
	}
	for i, r := range results {
		if r.commit != nil {
			if !a.durable(ctx, i, &r) {
				return
			}
		}
		if r.pass == "" {
			a.settle(i, r)
			continue
		}
		if passes >= maxPasses {
			a.settle(i, m.qmgrResult(queue.RcptDeferred, "4.3.0", "mail transport loop: "+rt.transport+" passes to "+r.pass))
			continue
		}
		addr := r.passAddr
		if addr == "" {
			addr = a.address(i, addrs)
		}
		_, domain := splitAddress(addr)
		next := parseTransport(r.pass, domain)
		a.request(ctx, next, []int{i}, map[int]string{i: addr}, passes+1)
	}
}

// durable runs what r's agent left for after the slot (result.commit: the
// commit of a staged Maildir delivery) before r is recorded or passed
// on. A failure turns a delivery into a deferral, so the retry (which
// rewrites the staged file, or finds it committed) commits again; false
// means ctx ended first, and the run is interrupted with the recipient
// unsettled.
func (a *attempt) durable(ctx context.Context, i int, r *result) bool {
	err := r.commit(ctx)
	r.commit = nil
	if err == nil {
		return true
	}
	if ctx.Err() != nil {
		a.interrupted = true
		return false
	}
	addr := a.msg.Envelope.Recipients[i].Address
	a.m.log.Warning("%s: <%s>: %v", a.msg.ID, addr, err)
	if r.state == queue.RcptDelivered || r.pass != "" {
		dsn, text := "4.3.0", err.Error()
		var de *delivery.Error
		if errors.As(err, &de) {
			dsn, text = de.DSN, de.Text
		}
		*r = result{state: queue.RcptDeferred, dsn: dsn, reason: text, relay: r.relay,
			handoff: r.handoff, done: a.m.now(), log: r.log}
	}
	return true
}

func (a *attempt) address(i int, addrs map[int]string) string {
	if s, ok := addrs[i]; ok {
		return s
	}
	return a.msg.Envelope.Recipients[i].Address
}

// settle takes one recipient's final result for this run: a bounce waits
// for its notice; anything else is recorded now.
func (a *attempt) settle(i int, r result) {
	if r.state == queue.RcptBounced {
		// Recorded after the notice is queued: a crash in between
		// bounces again (a duplicate notice), never loses it.
		a.bounced = append(a.bounced, bounceItem{index: i, res: r})
		return
	}
	if !a.m.record(a.msg, i, r, a.active) {
		a.unrecorded = true
		return
	}
	if r.state == queue.RcptDeferred {
		a.deferred = append(a.deferred, bounceItem{index: i, res: r})
	}
}

// expire returns the recipients deferred in this run to the sender: the
// message outlived its queue lifetime. Postfix's qmgr logs it once for
// the message ("from=<s>, status=expired, returned to sender"); the
// recipients' last deferral reasons go into the notice.
func (a *attempt) expire() {
	env := &a.msg.Envelope
	a.m.log.Info("%s: from=<%s>, status=expired, returned to sender", a.msg.ID, env.Sender)
	for _, it := range a.deferred {
		it.res.state = queue.RcptBounced
		it.res.quiet = true
		a.bounced = append(a.bounced, it)
	}
	a.deferred = nil
}

// record makes recipient i's result durable in the queue file and then logs
// it. If the record cannot be written the result is not logged as final: the
// recipient stays unsettled and is tried again (at worst a duplicate).
func (m *Manager) record(msg *queue.Message, i int, r result, active time.Time) bool {
	id, env := msg.ID, &msg.Envelope
	upd := queue.RecipientUpdate{Index: i, State: r.state, Replayable: r.replayable}
	if r.state != queue.RcptDelivered {
		upd.Reason = r.reason
	}
	if err := msg.UpdateRecipients([]queue.RecipientUpdate{upd}); err != nil {
		m.log.Warning("%s: recording the result for <%s>: %v", id, env.Recipients[i].Address, err)
		return false
	}
	if !r.quiet {
		m.logResult(id, env, i, r, active)
	}
	return true
}

func (m *Manager) logResult(id string, env *queue.Envelope, i int, r result, active time.Time) {
	m.logStatus(id, env, i, r, active, r.status())
}

// logStatus logs recipient i's result with the given status word, the
// record of Postfix's log_adhoc.
func (m *Manager) logStatus(id string, env *queue.Envelope, i int, r result, active time.Time, status string) {
	r.log.Info("%s", maillog.Delivery(maillog.DeliveryEvent{
		QueueID:    id,
		To:         env.Recipients[i].Address,
		OrigTo:     env.Recipients[i].Orig,
		Relay:      r.relay,
		Arrival:    env.Arrival,
		Active:     active,
		Handoff:    r.handoff,
		Done:       r.done,
		Resolution: m.set.resolution,
		DSN:        r.dsn,
		Status:     status,
		Reason:     r.reason,
	}))
}

func (m *Manager) moveOrWarn(id, from, to string) {
	if err := m.q.Move(id, from, to); err != nil {
		m.log.Warning("%s: %v", id, err)
	}
}

// qmgrResult is a result the queue manager decides without an agent
// (Postfix's qmgr logs these itself, with relay=none).
func (m *Manager) qmgrResult(state queue.RcptState, dsn, reason string) result {
	return result{state: state, dsn: dsn, reason: reason, relay: "none", done: m.now(), log: m.log}
}

// discard is discard(8): every recipient is "sent", with the next hop as
// the reason (optionally led by a DSN code) and relay=none.
func (m *Manager) discard(rt route, log *maillog.Logger) result {
	start := m.now()
	dsn, text := splitDSN("2.0.0", rt.nexthop)
	return result{state: queue.RcptDelivered, dsn: dsn, reason: text, relay: "none",
		handoff: start, done: m.now(), log: log}
}

// errorAgent is error(8): every recipient bounces with the next hop as
// the reason (default status 5.0.0).
func (m *Manager) errorAgent(rt route, log *maillog.Logger) result {
	start := m.now()
	dsn, text := splitDSN("5.0.0", rt.nexthop)
	state := queue.RcptBounced
	if dsn[0] == '4' {
		state = queue.RcptDeferred
	}
	return result{state: state, dsn: dsn, reason: text, relay: "none",
		handoff: start, done: m.now(), log: log}
}

// retryAgent is retry(8) (error(8) run as "retry"): every recipient is
// deferred with the next hop as the reason (default status 4.0.0).
func (m *Manager) retryAgent(rt route, log *maillog.Logger) result {
	start := m.now()
	dsn, text := splitDSN("4.0.0", rt.nexthop)
	return result{state: queue.RcptDeferred, dsn: dsn, reason: text, relay: "none",
		handoff: start, done: m.now(), log: log}
}

// runTransport delivers recipients idxs of msg through transport t and
// returns each one's result. The transport's limits hold the request
// back while its process or destination limit is reached, or park it
// (parked, no results) when enough requests wait for the destination
// already.
func (m *Manager) runTransport(ctx context.Context, t *transport, rt route, msg *queue.Message, idxs []int, addrs map[int]string) (_ map[int]result, parked bool) {
	out := make(map[int]result, len(idxs))
	env := &msg.Envelope
	t.ready()
	addr := func(i int) string {
		if s, ok := addrs[i]; ok {
			return s
		}
		return env.Recipients[i].Address
	}
	switch {
	case t.unavailable != "":
		for _, i := range idxs {
			out[i] = m.qmgrResult(queue.RcptDeferred, "4.3.0", t.unavailable)
		}
		return out, false
	case t.command == "discard":
		for _, i := range idxs {
			out[i] = m.discard(rt, t.log)
		}
		return out, false
	case t.command == "error":
		for _, i := range idxs {
			out[i] = m.errorAgent(rt, t.log)
		}
		return out, false
	case t.command == "retry":
		for _, i := range idxs {
			out[i] = m.retryAgent(rt, t.log)
		}
		return out, false
	}
	dest := rt.nexthop
	if t.rcptLimit == 1 {
		dest = strings.ToLower(addr(idxs[0]))
	}
	sus, parked := t.limits.acquire(ctx, dest, m.parkFunc(msg.ID))
	if parked {
		return nil, true
	}
	if sus != nil {
		// A dead destination: its mail waits without an attempt
		// (qmgr_defer_todo), with the failure that killed it.
		for _, i := range idxs {
			out[i] = m.qmgrResult(queue.RcptDeferred, sus.dsn, "delivery temporarily suspended: "+sus.reason)
		}
		return out, false
	}
	fb := outcome{}
	defer func() { t.limits.release(dest, fb) }()
	req := &delivery.Request{
		QueueID:  msg.ID,
		Envelope: env,
		Content:  msg.Content,
		Nexthop:  rt.nexthop,
	}
	for _, i := range idxs {
		r := env.Recipients[i]
		orig := r.Orig
		if a := addr(i); a != r.Address && orig == "" {
			orig = r.Address
		}
		req.Recipients = append(req.Recipients, delivery.Recipient{
			Index: i, Address: addr(i), OrigAddress: orig, ORCPT: r.ORCPT, Notify: uint8(r.Notify),
		})
	}
	handoff := m.now()
	results := t.agent.Deliver(ctx, req)
	fb = feedbackOf(ctx, results)
	for _, r := range results {
		if _, want := addrs[r.Index]; !want && !slices.Contains(idxs, r.Index) {
			m.log.Warning("%s: transport %s answered for recipient %d it was not given", msg.ID, t.name, r.Index)
			continue
		}
		done := r.Done
		if done.IsZero() {
			done = m.now()
		}
		out[r.Index] = result{state: r.State, dsn: r.DSN, reason: r.Reason, relay: r.Relay,
			handoff: handoff, done: done, log: t.log, replayable: r.Replayable, commit: r.Commit,
			pass: r.Pass, passAddr: r.Address, remoteMTA: r.RemoteMTA, diagnostic: r.Diagnostic}
	}
	for _, i := range idxs {
		if _, ok := out[i]; !ok {
			m.log.Warning("%s: transport %s gave no result for <%s>", msg.ID, t.name, addr(i))
			out[i] = m.qmgrResult(queue.RcptDeferred, "4.3.0", "delivery agent gave no result")
		}
	}
	return out, false
}

// feedbackOf is what a request's results tell the scheduler about its
// destination: a site failure (the hop status of Postfix's delivery
// agents) when any recipient has one, with that recipient's status and
// text for the suspension; nothing when ctx ended (an interrupted
// delivery says nothing about the destination); otherwise success.
func feedbackOf(ctx context.Context, results []delivery.Result) outcome {
	if ctx.Err() != nil {
		return outcome{}
	}
	for _, r := range results {
		if r.SiteFailure {
			return outcome{feedback: true, site: true, dsn: r.DSN, reason: r.Reason}
		}
	}
	return outcome{feedback: true}
}
