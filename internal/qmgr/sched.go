package qmgr

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"moat/internal/config"
)

// limiter schedules one transport's deliveries as Postfix's qmgr(8)
// "STRATEGIES" section and SCHEDULER_README describe, per destination
// (next hop, or recipient with a recipient limit of 1):
//
//   - at most procs deliveries in all (the service's maxproc, or
//     default_process_limit);
//   - slow start: a destination begins at
//     <transport>_initial_destination_concurrency, and each delivery that
//     ends without a site failure adds the positive feedback (1 by
//     default, or "1/concurrency") while the destination uses its window,
//     up to <transport>_destination_concurrency_limit; each site failure
//     subtracts the negative feedback, down to 1 (qmgr_queue.c's
//     hysteresis of 1);
//   - dead destinations: every site failure adds 1/window "failed
//     cohorts"; when they reach
//     <transport>_destination_concurrency_failed_cohort_limit the
//     destination is throttled, and its other mail is deferred at once
//     with the last failure's reason until minimal_backoff_time has passed
//     or postqueue -f asks (qmgr_queue_throttle, qmgr_queue_unthrottle); a
//     success in between clears the count;
//   - rate delay: <transport>_destination_rate_delay between deliveries to
//     one destination, which then has a concurrency of 1, and
//     <transport>_transport_rate_delay between any two deliveries of the
//     transport (postconf(5)).
//
// A freed slot goes straight to the longest-waiting request it fits, so
// one release wakes one worker: with a broadcast, every release of the
// one-recipient Maildir benchmark woke all ~30 workers waiting on the
// same destination to find the slot taken, on the delivery's critical
// path (docs/BENCHMARKS.md). Requests for other destinations that fit
// are not held behind them.
//
// Times here are the real clock (time.Now): they pace work in progress,
// while the Manager's clock dates mail.
type limiter struct {
	procs int
	sched schedParams

	mu    sync.Mutex
	busy  int
	dests map[string]*destState
	// blocked are the requests waiting with a worker, in arrival order:
	// at most maxBlocked per destination, so a short list. Parked
	// requests wait in their destination's own list, and parkedDests
	// names the destinations that have some (few: a destination parks
	// only once maxBlocked of its requests are blocked). Before, one
	// list held both, and every release walked the thousands parked for
	// the one-recipient Maildir benchmark: 11 % of moat's CPU in that
	// benchmark (docs/BENCHMARKS.md, sixth pass).
	blocked     []*slotWait
	parkedDests []string
	// nextAt is the earliest start of the transport's next delivery
	// under a transport rate delay.
	nextAt time.Time
	// swept is when idle destinations were last looked for.
	swept time.Time
}

// schedParams are one transport's scheduling parameters.
type schedParams struct {
	// limit is <transport>_destination_concurrency_limit; 0 is none.
	limit int
	// init is <transport>_initial_destination_concurrency, at most limit.
	init int
	// pos and neg are the concurrency feedback amounts.
	pos, neg feedback
	// cohorts is <transport>_destination_concurrency_failed_cohort_limit;
	// 0 never declares a destination dead.
	cohorts int
	// destDelay and transportDelay are the rate delays.
	destDelay, transportDelay time.Duration
	// deadFor is how long a dead destination stays throttled
	// (minimal_backoff_time, as Postfix's unthrottle timer).
	deadFor time.Duration
}

// feedback is a concurrency feedback amount (postconf(5)
// default_destination_concurrency_positive_feedback): a number, or a
// number divided by a number or by the destination's concurrency.
type feedback struct {
	coef     float64
	perConcy bool
}

// value is the amount at concurrency window (QMGR_FEEDBACK_VAL).
func (f feedback) value(window int) float64 {
	if f.perConcy {
		return f.coef / float64(max(window, 1))
	}
	return f.coef
}

// parseFeedback reads a feedback value: "1", "0.5", "1/4",
// "1/concurrency" (qmgr_feedback.c accepts these forms).
func parseFeedback(s string) (feedback, error) {
	s = strings.TrimSpace(s)
	num, den, frac := strings.Cut(s, "/")
	c, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || !(c >= 0 && c <= 1) { // NaN fails too
		return feedback{}, fmt.Errorf("bad feedback %q: want a number between 0 and 1, optionally / number or / concurrency", s)
	}
	if !frac {
		return feedback{coef: c}, nil
	}
	den = strings.TrimSpace(den)
	if den == "concurrency" {
		return feedback{coef: c, perConcy: true}, nil
	}
	d, err := strconv.ParseFloat(den, 64)
	if err != nil || !(d >= 1) {
		return feedback{}, fmt.Errorf("bad feedback %q: the divisor must be a number of at least 1 or \"concurrency\"", s)
	}
	return feedback{coef: c / d}, nil
}

// destState is one destination's state (Postfix's QMGR_QUEUE). It is
// dropped when the destination has nothing in progress, nothing waiting,
// no rate delay to keep, is not dead and has no failed cohorts counted
// (or has been idle for minimal_backoff_time), so the table holds
// destinations with work, as Postfix's queue list does. Postfix keeps a
// queue as long as mail for it waits in memory; moat's waiting mail is
// on disk, so the failure count outlives the moment the destination is
// idle, or a destination whose mail comes one message at a time would
// never be declared dead.
type destState struct {
	busy int
	// waiting counts the requests waiting for a slot, blocked those of
	// them that hold a worker (the rest are parked); resuming counts
	// parked requests called back that have not asked again (an
	// estimate: any request for the destination counts as one, and the
	// periodic kick resets it, so a message that went elsewhere cannot
	// hold it up).
	waiting, blocked, resuming int
	window                     int
	// parked are the parked requests, in arrival order.
	parked []*slotWait
	// success and failure are the hysteresis accumulators.
	success, failure float64
	failCohorts      float64
	// deadUntil, when not zero, marks the destination dead until then,
	// with the failure that did it.
	deadUntil time.Time
	dead      suspension
	// nextAt is the earliest start of the next delivery under a rate
	// delay.
	nextAt time.Time
	// idle is when the last delivery ended.
	idle time.Time
}

// suspension is why a dead destination's mail is deferred: the last site
// failure's status and text.
type suspension struct {
	dsn, reason string
}

// outcome is what a finished delivery tells the scheduler.
type outcome struct {
	// feedback: false when the delivery says nothing about the
	// destination (it was interrupted).
	feedback bool
	// site: a site failure, with its status and text.
	site        bool
	dsn, reason string
}

// slotWait is a request waiting for a slot; ready is closed once the slot
// has been taken for it, or the destination was declared dead (dead set).
// A parked request (park set) holds no worker: when a slot could be its,
// or its destination dies, park is called (with l.mu held; it must not
// block) and the request is tried again from the start.
type slotWait struct {
	dest  string
	ready chan struct{}
	dead  *suspension
	park  func()
}

// maxBlocked is how many requests for one destination may hold a worker
// while they wait for its slot; more are parked, so that a slow or
// rate-delayed destination with many messages does not take every worker
// from mail for other destinations (Postfix's in-memory queue holds such
// mail without a process; moat's workers each carry one message).
const maxBlocked = 2

func newLimiter(procs int, p schedParams) *limiter {
	if p.limit > 0 && p.init > p.limit {
		p.init = p.limit
	}
	if p.init < 1 {
		p.init = 1
	}
	if p.destDelay > 0 {
		p.limit, p.init = 1, 1 // postconf(5): a rate delay means concurrency 1
	}
	if p.transportDelay > 0 {
		procs = 1
	}
	return &limiter{procs: max(procs, 1), sched: p, dests: map[string]*destState{}}
}

// state returns d's state, creating it at the initial concurrency, and
// revives a dead destination whose time is up; l.mu is held.
func (l *limiter) state(d string, now time.Time) *destState {
	st := l.dests[d]
	if st == nil {
		st = &destState{window: l.sched.init}
		l.dests[d] = st
	}
	if !st.deadUntil.IsZero() && !now.Before(st.deadUntil) {
		l.revive(st)
	}
	return st
}

// revive ends a destination's dead state: "back from the almost grave,
// best concurrency is anyone's guess" (qmgr_queue_unthrottle).
func (l *limiter) revive(st *destState) {
	st.deadUntil = time.Time{}
	st.dead = suspension{}
	st.window = l.sched.init
	if st.busy > 0 {
		st.window = st.busy
	}
	st.success, st.failure, st.failCohorts = 0, 0, 0
}

// fits reports whether a slot for st is free now; l.mu is held.
func (l *limiter) fits(st *destState, now time.Time) bool {
	return l.busy < l.procs && !now.Before(l.nextAt) &&
		st.busy < st.window && !now.Before(st.nextAt)
}

// take occupies a slot for st; l.mu is held.
func (l *limiter) take(st *destState) {
	l.busy++
	st.busy++
}

// acquire waits for a free slot for destination d. It returns a
// suspension instead, without a slot, when d is dead: the caller defers
// the request with it, and must not call release. When park is not nil
// and maxBlocked requests for d already wait, it returns parked at once,
// without a slot: park is called later, when the request should be tried
// again (see slotWait). When ctx ends first it returns parked without
// a slot and without a call-back: the caller sees ctx's error.
func (l *limiter) acquire(ctx context.Context, d string, park func()) (sus *suspension, parked bool) {
	now := time.Now()
	l.mu.Lock()
	if len(l.dests) > sweepAt && now.Sub(l.swept) >= time.Second {
		l.sweep(now)
	}
	st := l.state(d, now)
	if st.resuming > 0 {
		st.resuming--
	}
	if !st.deadUntil.IsZero() {
		s := st.dead
		l.mu.Unlock()
		return &s, false
	}
	if st.waiting == 0 && l.fits(st, now) {
		// A waiter for d would have been given the free slot already.
		l.take(st)
		l.mu.Unlock()
		return nil, false
	}
	st.waiting++
	if park != nil && st.blocked >= maxBlocked {
		if len(st.parked) == 0 {
			l.parkedDests = append(l.parkedDests, d)
		}
		st.parked = append(st.parked, &slotWait{dest: d, park: park})
		l.mu.Unlock()
		return nil, true
	}
	w := &slotWait{dest: d, ready: make(chan struct{})}
	st.blocked++
	l.blocked = append(l.blocked, w)
	// Parked requests called back hold no slot, so a slot may be free
	// while they wait: hand it out now, or this request could wait for
	// a release that never comes.
	l.handout(now)
	l.mu.Unlock()
	select {
	case <-w.ready:
		return w.dead, false
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-w.ready: // handed a slot (or a suspension) meanwhile
		if w.dead == nil {
			l.mu.Unlock()
			l.release(d, outcome{})
			l.mu.Lock()
		}
	default:
		if i := slices.Index(l.blocked, w); i >= 0 {
			l.blocked = slices.Delete(l.blocked, i, i+1)
			st.waiting--
			st.blocked--
			l.drop(d, st, time.Now())
		}
	}
	return nil, true
}

// release frees d's slot, applies the delivery's feedback, and hands the
// free capacity to the waiters it fits, oldest first.
func (l *limiter) release(d string, o outcome) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.busy--
	st := l.dests[d]
	if st == nil { // cannot happen: a slot keeps its state
		st = l.state(d, now)
		st.busy = 1
	}
	st.busy--
	st.idle = now
	if o.feedback && st.deadUntil.IsZero() {
		if o.site {
			l.throttle(d, st, o, now)
		} else {
			l.unthrottle(st)
		}
	}
	pace := false
	if l.sched.destDelay > 0 {
		st.nextAt = now.Add(l.sched.destDelay)
		pace = true
	}
	if l.sched.transportDelay > 0 {
		l.nextAt = now.Add(l.sched.transportDelay)
		pace = true
	}
	if pace {
		// Waiters held back only by the delay need a wake-up then.
		time.AfterFunc(max(l.sched.destDelay, l.sched.transportDelay), l.kick)
	}
	l.handout(now)
	l.drop(d, st, now)
}

// unthrottle is positive feedback (qmgr_queue_unthrottle): a delivery
// without a site failure ends the failed-cohort count and, while the
// destination uses its window, raises the window toward the limit.
func (l *limiter) unthrottle(st *destState) {
	st.failCohorts = 0
	p := &l.sched
	if p.limit > 0 && st.window >= p.limit {
		return
	}
	// Grow only while the window is in use, allowing a margin of the
	// initial concurrency (the busy count fluctuates).
	if st.window >= st.busy+1+p.init {
		return
	}
	fb := p.pos.value(st.window)
	st.success += fb
	for st.success+fb/2 >= 1 {
		st.window++
		st.success--
		st.failure = 0
	}
	if p.limit > 0 && st.window > p.limit {
		st.window = p.limit
	}
}

// throttle is negative feedback (qmgr_queue_throttle): a site failure
// counts 1/window failed cohorts, lowers the window toward 1 and, at the
// failed-cohort limit, declares the destination dead. The waiters for a
// dead destination are told at once.
func (l *limiter) throttle(d string, st *destState, o outcome, now time.Time) {
	p := &l.sched
	st.failCohorts += 1 / float64(max(st.window, 1))
	if p.cohorts > 0 && st.failCohorts >= float64(p.cohorts) {
		st.deadUntil = now.Add(max(p.deadFor, time.Second))
		st.dead = suspension{dsn: o.dsn, reason: o.reason}
		l.failWaiters(d, st)
		return
	}
	fb := p.neg.value(st.window)
	st.failure -= fb
	for st.failure-fb/2 < 0 {
		st.window--
		st.success = 0
		st.failure++
	}
	st.window = max(st.window, 1)
}

// failWaiters releases d's waiters with its suspension; l.mu is held.
func (l *limiter) failWaiters(d string, st *destState) {
	kept := l.blocked[:0]
	for _, w := range l.blocked {
		if w.dest != d {
			kept = append(kept, w)
			continue
		}
		st.waiting--
		st.blocked--
		s := st.dead
		w.dead = &s
		close(w.ready)
	}
	clear(l.blocked[len(kept):])
	l.blocked = kept
	for _, w := range st.parked {
		st.waiting--
		w.park()
	}
	l.unpark(d, st, len(st.parked))
}

// unpark removes the first n of st's parked requests; l.mu is held.
func (l *limiter) unpark(d string, st *destState, n int) {
	if n == 0 {
		return
	}
	clear(st.parked[:n])
	st.parked = st.parked[n:]
	if len(st.parked) == 0 {
		st.parked = nil
		if i := slices.Index(l.parkedDests, d); i >= 0 {
			l.parkedDests = slices.Delete(l.parkedDests, i, i+1)
		}
	}
}

// handout gives free slots to the blocked requests they fit, oldest
// first, and calls back parked requests while their destination has
// fewer than maxBlocked requests waiting with a worker (counting those
// called back and not yet returned), so that the next free slot finds a
// request ready instead of waiting for a call-back's round trip; l.mu is
// held.
func (l *limiter) handout(now time.Time) {
	for i := 0; i < len(l.blocked) && l.busy < l.procs; {
		w := l.blocked[i]
		st := l.state(w.dest, now)
		if !l.fits(st, now) {
			i++
			continue
		}
		st.waiting--
		st.blocked--
		l.blocked = slices.Delete(l.blocked, i, i+1)
		l.take(st)
		close(w.ready)
	}
	for i := 0; i < len(l.parkedDests) && l.busy < l.procs; {
		d := l.parkedDests[i]
		st := l.state(d, now)
		n := 0
		for n < len(st.parked) && st.blocked+st.resuming < maxBlocked {
			st.waiting--
			st.resuming++
			st.parked[n].park()
			n++
		}
		l.unpark(d, st, n)
		if i < len(l.parkedDests) && l.parkedDests[i] == d {
			i++
		}
	}
}

// kick hands out slots a rate delay held back, and (from the periodic
// scan) forgets the call-backs still out.
func (l *limiter) kick() {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, st := range l.dests {
		st.resuming = 0
	}
	l.handout(now)
	l.sweep(now)
}

// sweepAt is the table size above which acquire looks for destinations
// to forget (at most once a second).
const sweepAt = 1024

// sweep forgets every destination drop would, and revives the dead ones
// whose time is up; l.mu is held.
func (l *limiter) sweep(now time.Time) {
	l.swept = now
	for d, st := range l.dests {
		if !st.deadUntil.IsZero() && !now.Before(st.deadUntil) {
			l.revive(st)
		}
		l.drop(d, st, now)
	}
}

// drop forgets d when nothing about it needs keeping; l.mu is held.
func (l *limiter) drop(d string, st *destState, now time.Time) {
	if st.busy == 0 && st.waiting == 0 && st.deadUntil.IsZero() && !now.Before(st.nextAt) &&
		(st.failCohorts == 0 || now.Sub(st.idle) >= l.sched.deadFor) {
		delete(l.dests, d)
	}
}

// reviveAll ends every destination's dead state, as postqueue -f does in
// Postfix (qmgr_enable_all): the admin asks for a new attempt now.
func (l *limiter) reviveAll() {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for d, st := range l.dests {
		if !st.deadUntil.IsZero() {
			l.revive(st)
			l.drop(d, st, now)
		}
	}
}

// window is d's current concurrency window, for tests.
func (l *limiter) window(d string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.dests[d]; st != nil {
		return st.window
	}
	return l.sched.init
}

// loadSchedParams reads the scheduling parameters of one transport
// (postconf(5): <transport>_initial_destination_concurrency,
// <transport>_destination_concurrency_{limit,positive_feedback,
// negative_feedback,failed_cohort_limit}, <transport>_destination_rate_delay,
// <transport>_transport_rate_delay), each falling back to its default_
// (or unprefixed) parameter for a service Postfix derives none for.
func loadSchedParams(cfg *config.Config, service string) (schedParams, error) {
	var p schedParams
	var err error
	if p.limit, err = transportInt(cfg, service, "destination_concurrency_limit"); err != nil {
		return p, err
	}
	if p.init, err = transportIntOr(cfg, service, "initial_destination_concurrency", "initial_destination_concurrency"); err != nil {
		return p, err
	}
	if p.cohorts, err = transportInt(cfg, service, "destination_concurrency_failed_cohort_limit"); err != nil {
		return p, err
	}
	for _, f := range []struct {
		suffix string
		dst    *feedback
	}{{"destination_concurrency_positive_feedback", &p.pos}, {"destination_concurrency_negative_feedback", &p.neg}} {
		name := transportName(cfg, service, f.suffix, "default_"+f.suffix)
		if *f.dst, err = parseFeedback(cfg.Get(name)); err != nil {
			return p, fmt.Errorf("qmgr: %s: %w", name, err)
		}
	}
	for _, d := range []struct {
		suffix string
		dst    *time.Duration
	}{{"destination_rate_delay", &p.destDelay}, {"transport_rate_delay", &p.transportDelay}} {
		name := transportName(cfg, service, d.suffix, "default_"+d.suffix)
		if *d.dst, err = cfg.Duration(name); err != nil {
			return p, fmt.Errorf("qmgr: %s: %w", name, err)
		}
	}
	if p.deadFor, err = cfg.Duration("minimal_backoff_time"); err != nil {
		return p, fmt.Errorf("qmgr: minimal_backoff_time: %w", err)
	}
	return p, nil
}

// transportName is <service>_<suffix> when the configuration knows it (a
// master.cf service's derived parameter), else fallback.
func transportName(cfg *config.Config, service, suffix, fallback string) string {
	if name := service + "_" + suffix; cfg.IsBuiltin(name) {
		return name
	}
	return fallback
}

// transportIntOr is transportInt with an explicit fallback parameter.
func transportIntOr(cfg *config.Config, service, suffix, fallback string) (int, error) {
	name := transportName(cfg, service, suffix, fallback)
	v, err := cfg.Int(name)
	if err != nil {
		return 0, fmt.Errorf("qmgr: %s: %w", name, err)
	}
	return int(v), nil
}
