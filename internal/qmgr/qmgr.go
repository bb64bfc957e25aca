// Package qmgr is moat's queue manager (Postfix's qmgr(8)): it takes
// messages from incoming/ (and, every queue_run_delay, from deferred/) into
// active/, chooses each unsettled recipient's transport and next hop
// (content_filter, transport_maps, then the address class's
// local_transport, virtual_transport, relay_transport or default_transport,
// as trivial-rewrite(8) does), hands recipients with the same route to that
// master.cf service's delivery agent in requests of at most
// <transport>_destination_recipient_limit, within the service's maxproc and
// <transport>_destination_concurrency_limit, records each result in the
// queue file before it logs it, and finally removes the message, moves it
// to deferred/ (retried with Postfix's back-off), or returns it to its
// sender once it outlives maximal_queue_lifetime.
//
// The agents (internal/delivery/local, virtual, pipe, lmtp) are given by
// the process that runs the manager (Deps.Agents); discard(8), error(8)
// and retry are built in. A transport without an agent defers its mail
// with a reason mailq shows, never bounces it.
//
// Crash safety rests on the queue's per-recipient state log: a recipient is
// recorded delivered or bounced right after the agent finished, so a message
// caught mid-delivery by a crash goes back to incoming/ at the next start
// (Queue.RequeueActive) and only its unsettled recipients are tried again.
package qmgr

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/postqueue"
	"moat/internal/queue"
	"moat/internal/resolve"
)

// Deps is what the queue manager needs from the process that runs it (the
// master starts it as a background role).
type Deps struct {
	Config *config.Config
	// Log is tagged postfix/qmgr; the agents log through children of it
	// (postfix/local, postfix/discard...), as Postfix's do.
	Log   *maillog.Logger
	Queue *queue.Queue
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Classify returns a recipient domain's address class
	// (ADDRESS_CLASS_README), which chooses the transport. Nil means a
	// resolver built from Config (internal/resolve, trivial-rewrite(8)),
	// closed when Run returns; a process that has one open already may
	// pass its Domain method.
	Classify func(domain string) (resolve.Class, error)
	// Agents build the delivery agents by master.cf command ("local",
	// "virtual", "pipe", "lmtp"). A transport whose command has none is
	// deferred with a reason mailq shows ("not available yet"); discard,
	// error and retry are built in.
	Agents map[string]AgentFactory
	// Self is the moat binary, for agents' short-lived children; "" means
	// os.Executable().
	Self string
	// Rewrite rewrites the envelope of mail an agent submits (local(8)
	// forwarding) as cleanup does; nil means no rewriting.
	Rewrite func(env *queue.Envelope) error
	// ProxySocket is the proxymap service's socket when it runs, for the
	// tables of the queue manager and its agents.
	ProxySocket string
	// SpawnSocket is the root executor's socket (master.cf's local
	// service) for the agents' work as the recipient, when the queue
	// manager is not root; "" lets the agents fork it themselves.
	SpawnSocket string
}

// Manager is one running queue manager. Create it with New; run it with Run.
type Manager struct {
	log      *maillog.Logger
	q        *queue.Queue
	now      func() time.Time
	classify func(domain string) (resolve.Class, error)
	closer   func() error // releases the resolver New opened, if any
	ran      bool
	set      settings
	agents   agentLogs
	router   *router
	// transports are master.cf's delivery services by name.
	transports map[string]*transport

	wake chan struct{}

	mu       sync.Mutex
	inflight map[string]bool // queue IDs claimed by a worker
	park     parking
	retryAt  map[string]time.Time // deferred messages' next attempt
	// publicMtime is public/'s modification time when last looked at.
	publicMtime time.Time
}

// agentLogs are the loggers of the in-process delivery agents, tagged as
// Postfix's agents are, so pflogsumm counts their records.
type agentLogs struct {
	bounce *maillog.Logger
}

// scanInterval is how often incoming/ is scanned without a Wake, for mail
// committed by another process (sendmail, a second smtpd process) and for
// postqueue -f requests. Postfix's qmgr relies on triggers alone; a periodic
// scan costs one readdir and makes a lost trigger harmless.
const scanInterval = 3 * time.Second

// New reads the parameters the queue manager and its agents use and returns
// a Manager. Bad values are errors here, so the master refuses to start
// rather than deferring every message.
func New(d Deps) (*Manager, error) {
	if d.Config == nil || d.Log == nil || d.Queue == nil {
		return nil, errors.New("qmgr: Config, Log and Queue are required")
	}
	set, err := loadSettings(d.Config)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		log:      d.Log,
		q:        d.Queue,
		now:      d.Now,
		classify: d.Classify,
		set:      set,
		wake:     make(chan struct{}, 1),
		inflight: map[string]bool{},
		retryAt:  map[string]time.Time{},
		park: parking{jobs: map[string]job{}, early: map[string]bool{},
			signal: make(chan struct{}, 1)},
	}
	if m.now == nil {
		m.now = time.Now
	}
	log := d.Log
	mo, err := maps.DaemonOptions(d.Config, func(msg string) { log.Warning("%s", msg) })
	if err != nil {
		return nil, fmt.Errorf("qmgr: %w", err)
	}
	mo.ProxySocket = d.ProxySocket
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c())
		}
		return errors.Join(errs...)
	}
	if m.classify == nil {
		r, err := resolve.New(d.Config, mo)
		if err != nil {
			return nil, fmt.Errorf("qmgr: %w", err)
		}
		m.classify = r.Domain
		closers = append(closers, r.Close)
	}
	if m.router, err = newRouter(d.Config, mo, m.classify); err != nil {
		closeAll()
		return nil, err
	}
	closers = append(closers, m.router.close)
	if err := m.buildTransports(d); err != nil {
		closeAll()
		return nil, err
	}
	closers = append(closers, m.closeTransports)
	m.closer = closeAll
	pid := os.Getpid()
	m.agents = agentLogs{
		bounce: d.Log.With("bounce", pid),
	}
	return m, nil
}

// Wake tells the manager that new mail is in incoming/ (smtpd calls it right
// after a commit, as Postfix's cleanup triggers qmgr). It never blocks: a
// wake-up already pending covers this one too.
func (m *Manager) Wake() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// job is one message for a worker: its queue ID and the queue it is in.
// A parked message resumes from active/ with only the recipients it
// parked (only) and carry set when its earlier part left recipients
// deferred or unrecorded.
type job struct {
	id, from string
	only     []int
	carry    bool
	// msg, for a parked message, is its queue file still open and
	// parsed (up to maxOpenParked of them), so that resuming it costs
	// a stat instead of an open and a parse.
	msg *queue.Message
}

// Run recovers messages left in active/ by a previous run, then delivers
// until ctx ends: incoming/ at start, on Wake and every few seconds;
// deferred/ at start and on a postqueue -f request (every message), and every
// queue_run_delay (the messages whose back-off time has passed).
// It returns after the deliveries in progress have finished and been
// recorded, so no recipient is left half-done.
//
// A Manager runs once: Run releases its tables when it returns.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	again := m.ran
	m.ran = true
	m.mu.Unlock()
	if again {
		return errors.New("qmgr: Run called twice")
	}
	if m.closer != nil {
		defer func() {
			if err := m.closer(); err != nil {
				m.log.Warning("closing tables: %v", err)
			}
		}()
	}
	if _, err := m.q.RequeueActive(); err != nil {
		return fmt.Errorf("qmgr: %w", err)
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range m.set.workers {
		wg.Go(func() {
			for j := range jobs {
				m.process(ctx, j)
			}
		})
	}
	defer func() {
		close(jobs)
		wg.Wait()
		m.unparkAll()
	}()

	scan := time.NewTicker(scanInterval)
	defer scan.Stop()
	retry := time.NewTicker(m.set.queueRunDelay)
	defer retry.Stop()

	// At start every deferred message is due (the back-off times were kept
	// in memory by the previous run), except one this run has deferred
	// already while incoming/ was handed out.
	incoming, deferred, flush := true, true, false
	for {
		if incoming {
			incoming = false
			m.dispatch(ctx, jobs, queue.Incoming, false)
		}
		if deferred {
			if flush {
				// postqueue -f: dead destinations get a new
				// attempt now, as Postfix's qmgr_enable_all.
				for _, t := range m.transports {
					t.limits.reviveAll()
				}
			}
			m.dispatch(ctx, jobs, queue.Deferred, flush)
			deferred, flush = false, false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
			incoming = true
			// postqueue -f pokes the trigger after leaving its request;
			// smtpd's wake-ups (one per message) cost one stat here.
			if m.publicChanged() && m.flushRequested() {
				deferred, flush = true, true
			}
		case <-scan.C:
			incoming = true
			// A parked request whose message went elsewhere (deleted,
			// parked at another destination first) triggers no
			// release: free slots reach the others at the latest now.
			for _, t := range m.transports {
				t.limits.kick()
			}
			if m.flushRequested() {
				deferred, flush = true, true
			}
		case <-retry.C:
			deferred = true
		case <-m.park.signal:
			m.resume(ctx, jobs)
		}
	}
}

// publicChanged reports whether public/, where postqueue leaves its
// requests, changed since the last look (a new request changes the
// directory's modification time). The periodic scan reads the directory
// regardless, so a change this misses waits a few seconds at most.
func (m *Manager) publicChanged() bool {
	fi, err := os.Stat(filepath.Join(m.q.Dir(), postqueue.TriggerDir))
	if err != nil {
		return true
	}
	mt := fi.ModTime()
	m.mu.Lock()
	defer m.mu.Unlock()
	if mt.Equal(m.publicMtime) {
		return false
	}
	m.publicMtime = mt
	return true
}

// flushRequested takes postqueue's requests (postqueue -f, -i, -s) from
// public/. Every kind flushes the whole deferred queue: -i and -s ask for
// less, and trying more early costs a little work, not mail.
func (m *Manager) flushRequested() bool {
	reqs, err := postqueue.TakeRequests(m.q.Dir())
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.log.Warning("flush requests: %v", err)
		}
		return false
	}
	return len(reqs) > 0
}

// dispatch hands every message of the named queue, oldest first, to the
// workers, skipping those a worker already has and, in deferred/, those
// whose back-off time has not yet passed (unless all asks for every one, as
// postqueue -f does). It returns early when ctx ends.
func (m *Manager) dispatch(ctx context.Context, jobs chan<- job, from string, all bool) {
	ids, err := m.q.List(from)
	if err != nil {
		m.log.Warning("scan %s: %v", from, err)
		return
	}
	if from == queue.Deferred {
		ids = m.due(ids, all)
	}
	// While a long deferred queue is handed out, new mail must not wait
	// behind it (qmgr(8) alternates between the queues): a Wake then
	// hands out incoming/ first.
	var wake <-chan struct{}
	if from == queue.Deferred {
		wake = m.wake
	}
	for _, id := range ids {
		if !m.claim(id) {
			continue
		}
		for sent := false; !sent; {
			select {
			case jobs <- job{id: id, from: from}:
				sent = true
			case <-wake:
				m.dispatch(ctx, jobs, queue.Incoming, false)
			case <-ctx.Done():
				m.release(id)
				return
			}
		}
	}
}

// due returns the deferred messages whose next attempt has come (all of
// them when all is set) and forgets the back-off times of messages no
// longer in deferred/ (delivered, or deleted by postsuper) nor with a
// worker.
func (m *Manager) due(ids []string, all bool) []string {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	listed := make(map[string]bool, len(ids))
	var out []string
	for _, id := range ids {
		listed[id] = true
		if at, ok := m.retryAt[id]; all || !ok || !now.Before(at) {
			out = append(out, id)
		}
	}
	for id, at := range m.retryAt {
		// A message not listed may be gone (delivered, postsuper -d) or
		// may have reached deferred/ after ids was read: a worker sets
		// the time, moves the message and releases it in between. Only
		// a time that has passed is forgotten, so the second case keeps
		// its back-off, and the table stays bounded by
		// maximal_backoff_time.
		if !listed[id] && !m.inflight[id] && !now.Before(at) {
			delete(m.retryAt, id)
		}
	}
	return out
}

// backoff records when a message just deferred is next tried: after as
// long as it has been queued, but at least minimal_backoff_time and at most
// maximal_backoff_time (postconf(5); Postfix's qmgr computes it so), so
// that a message failing for days is not retried every few minutes.
func (m *Manager) backoff(id string, arrival time.Time) {
	now := m.now()
	wait := min(max(now.Sub(arrival), m.set.minBackoff), m.set.maxBackoff)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.retryAt[id] = now.Add(wait)
}

func (m *Manager) claim(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inflight[id] {
		return false
	}
	m.inflight[id] = true
	return true
}

func (m *Manager) release(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.inflight, id)
}

// settings are the parameters read once at New.
type settings struct {
	myhostname string

	queueRunDelay time.Duration
	minBackoff    time.Duration
	maxBackoff    time.Duration
	// maxLifetime and bounceLifetime are maximal_queue_lifetime and
	// bounce_queue_lifetime (for mail from the null sender): a message
	// still deferred after it is returned to its sender.
	maxLifetime    time.Duration
	bounceLifetime time.Duration
	// delayWarn is delay_warning_time: 0 sends no delay warnings.
	delayWarn  time.Duration
	resolution int
	workers    int
	dsn        dsnSettings
}

// workers is how many messages are in delivery at once; each
// transport's own limits (maxproc, destination concurrency) then apply.
const workers = 32

func loadSettings(cfg *config.Config) (settings, error) {
	s := settings{
		myhostname: cfg.Get("myhostname"),
	}
	var err error
	wrap := func(name string, err error) error { return fmt.Errorf("qmgr: %s: %w", name, err) }
	if s.queueRunDelay, err = cfg.Duration("queue_run_delay"); err != nil {
		return s, wrap("queue_run_delay", err)
	}
	if s.queueRunDelay <= 0 {
		return s, wrap("queue_run_delay", errors.New("must be positive"))
	}
	if s.minBackoff, err = cfg.Duration("minimal_backoff_time"); err != nil {
		return s, wrap("minimal_backoff_time", err)
	}
	if s.maxBackoff, err = cfg.Duration("maximal_backoff_time"); err != nil {
		return s, wrap("maximal_backoff_time", err)
	}
	if s.maxBackoff < s.minBackoff {
		s.maxBackoff = s.minBackoff
	}
	res, err := cfg.Int("delay_logging_resolution_limit")
	if err != nil {
		return s, wrap("delay_logging_resolution_limit", err)
	}
	s.resolution = int(min(max(res, 0), 6))
	s.workers = workers
	if s.maxLifetime, err = cfg.Duration("maximal_queue_lifetime"); err != nil {
		return s, wrap("maximal_queue_lifetime", err)
	}
	if s.bounceLifetime, err = cfg.Duration("bounce_queue_lifetime"); err != nil {
		return s, wrap("bounce_queue_lifetime", err)
	}
	if s.delayWarn, err = cfg.Duration("delay_warning_time"); err != nil {
		return s, wrap("delay_warning_time", err)
	}
	if s.dsn, err = loadDSNSettings(cfg); err != nil {
		return s, err
	}
	return s, nil
}
