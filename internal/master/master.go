// Package master is moat's master(8): it reads main.cf and master.cf,
// opens and recovers the queue, binds one listener set per master.cf inet
// service, and runs the services; it reloads on SIGHUP without closing a
// listener that stays configured, and stops on SIGTERM.
//
// # Process model (Options.Children, what `postfix start` runs)
//
// The master stays root: it binds every inet listener, creates the
// private/ sockets of anvil and proxymap and the public/qmgr FIFO, and
// runs each service as a child process of the moat binary (the hidden
// ChildVerb), handing the sockets down as inherited descriptors (fd 3 is
// a readiness pipe, fd 4 onwards the listeners). A child (RunChild)
// opens what it needs as root — the log sink, the queue, its tables,
// the FIFO — then drops privileges as its master.cf row says (unpriv:
// mail_owner, no supplementary groups; chroot: jailed in queue_directory,
// through internal/privsep), says ready, and serves.
//
//	smtpd (each inet row)  mail_owner, jailed per the chroot column; many
//	                       sessions as goroutines, bounded by maxproc
//	qmgr (+ local, discard, error agents)
//	                       root, unjailed while local delivery runs inside
//	                       it (mail_owner when master.cf's local row says
//	                       unpriv y); woken through public/qmgr
//	anvil, proxymap        their rows' columns (stock: mail_owner,
//	                       unjailed), on private/anvil, private/proxymap
//
// qmgr and anvil run even without a master.cf row (moat's smtpd relies on
// them); proxymap runs when master.cf has its row. Every other stock
// command is named once in the start-up log as folded into another role
// or not run yet; an unknown command is an error naming its line.
//
// A child that exits unexpectedly is restarted after 1 s, doubling to
// 60 s, with master(8)'s warnings; after five quick deaths in a row the
// master also logs at fatal level, and keeps the back-off. A reload
// starts the new generation's children on the same sockets and, once all
// are ready, tells the old ones (SIGUSR1) to stop accepting and finish
// their sessions, so no connection is refused and no session cut; the
// queue manager alone is stopped before its successor starts, since two
// would both recover active/. Children die with the master (SIGKILL via
// the parent-death signal), so a master restarted after a crash can bind
// its ports at once.
//
// Without Options.Children (the package's tests) every role runs in this
// process instead: sessions as goroutines, the queue manager as a
// background role woken by each commit.
//
// Where moat's master differs from Postfix's:
//   - one process per service, not per session: maxproc bounds the
//     sessions (goroutines) of a service's child;
//   - stress mode is decided per session inside the smtpd child (see
//     stressState), not by restarting processes with -o stress=yes;
//   - a reload that fails (bad main.cf or master.cf, a port that cannot be
//     bound, a child that cannot start) is logged and the master keeps
//     running on the previous configuration, where Postfix's master exits
//     on a fatal error;
//   - the logger, the queue and inet_interfaces/inet_protocols are set up
//     at start only; a reload that changes queue_directory or
//     maillog_file is logged as ignored (Postfix ignores inet_interfaces
//     changes the same way);
//   - the process-limit warning is logged for every inet service at its
//     limit, once per 1000 seconds as master(8) does; Postfix 3.7 logs it
//     only for services with maxproc above 1 (those its stress mode
//     covers);
//   - the PID file is removed at exit (Postfix leaves it; only its lock
//     matters to both).
package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/privsep"
	"moat/internal/queue"
)

// ConnServer serves the sessions of one service generation: the shape of
// internal/smtpd's Server. ServeConn runs one session and returns when it
// ends or ctx is cancelled (stop); Close is called once, after the
// generation's last session ended.
type ConnServer interface {
	ServeConn(ctx context.Context, c net.Conn)
	Close() error
}

// ServiceDeps is what a ServerFactory gets for one master.cf service.
type ServiceDeps struct {
	// Config is main.cf with the service's -o overrides laid over it.
	Config *config.Config
	// Service is the master.cf service name ("smtp", "127.0.0.1:2525").
	Service string
	// Log logs as "$syslog_name/COMMAND[pid]" with the service's own
	// syslog_name (postfix/submission/smtpd).
	Log   *maillog.Logger
	Queue *queue.Queue
	// Committed is called after a message is durably queued, to wake the
	// background roles (the queue manager) at once rather than at their
	// next scan.
	Committed func(id string)
	Now       func() time.Time
	// AnvilSocket and ProxySocket are the anvil and proxymap services'
	// sockets, relative to the queue directory (a child's working
	// directory, jailed or not: "private/anvil"); "" when the service
	// does not run (in-process masters).
	AnvilSocket, ProxySocket string
}

// ServerFactory builds a service's server from its parameters; it is
// looked up by master.cf's command column ("smtpd").
type ServerFactory func(ServiceDeps) (ConnServer, error)

// Role is a background role started with the master and stopped with it:
// the queue manager (qmgr(8)) is the first. Wake asks it to look at the
// queue now (a message was committed).
type Role interface {
	Run(ctx context.Context) error
	Wake()
}

// RoleDeps is what a RoleFactory gets.
type RoleDeps struct {
	Config *config.Config
	Log    *maillog.Logger // tagged with the role's name
	Queue  *queue.Queue
	// Listener is the role's private/NAME socket (Socket roles, run as
	// children only).
	Listener net.Listener
	// ProxySocket is the proxymap service's socket when it runs, for the
	// role's proxy: tables (see ServiceDeps).
	ProxySocket string
	// SpawnSocket is the local service's socket (the root executor of
	// deliveries as the recipient, asuser.Serve) when it runs as a child:
	// the queue manager, not root, sends its agents' privileged work
	// there; "" for an in-process master, whose agents fork themselves.
	SpawnSocket string
}

// RoleSpec names a background role and how to build it.
type RoleSpec struct {
	Name string // also its log tag and master.cf command: "qmgr"
	New  func(RoleDeps) (Role, error)
	// Implicit roles run as children even when master.cf has no row for
	// them (moat's smtpd relies on qmgr and anvil); others only with one.
	Implicit bool
	// Socket roles serve a UNIX socket, private/NAME, that the master
	// binds and passes down (anvil, proxymap).
	Socket bool
	// ChildOnly roles are not started by an in-process master.
	ChildOnly bool
}

// EventKind says what an Event reports.
type EventKind int

// The events a master reports through Options.Notify.
const (
	Ready        EventKind = iota // listeners bound, PID file written
	Reloaded                      // a reload took effect
	ReloadFailed                  // a reload was refused; the old configuration runs on
)

// Event reports a step of the master's life to Options.Notify: what the
// `postfix start` readiness pipe and tests wait for.
type Event struct {
	Kind EventKind
	// Addrs are the bound listener addresses by master.cf service name
	// (the real ports when master.cf says port 0).
	Addrs map[string][]net.Addr
	Err   error
}

// DefaultStopTimeout bounds how long stop waits for sessions to end after
// cancelling them, before closing their connections.
const DefaultStopTimeout = 10 * time.Second

// Options configure Run.
type Options struct {
	// ConfigDir holds main.cf and master.cf.
	ConfigDir string
	// Dir resolves a relative queue_directory (master(8) chdir()s to it
	// from where it was started); "" means the current directory.
	Dir string
	// Servers maps master.cf command names to the servers moat runs for
	// inet services.
	Servers map[string]ServerFactory
	// Roles are started after queue recovery and before the listeners,
	// and stopped last.
	Roles []RoleSpec
	// Stderr logs to standard error unless maillog_file is set (`postfix
	// start-fg`).
	Stderr bool
	// Signals makes Run handle SIGHUP (reload) and SIGTERM/SIGINT (stop);
	// tests leave it off and use Reload and ctx instead.
	Signals bool
	// Reload triggers a reload, like SIGHUP.
	Reload <-chan struct{}
	// Notify, when set, is called on start-up and after each reload.
	Notify func(Event)
	// StopTimeout bounds the wait for sessions at stop; 0 means
	// DefaultStopTimeout.
	StopTimeout time.Duration
	// SyslogPath overrides /dev/log.
	SyslogPath string
	// Children runs each service as a child process of the moat binary
	// (the hidden ChildVerb) instead of in this process: smtpd children
	// on the master's listeners, the queue manager as a child of its own
	// woken through QmgrFIFO. Servers and Roles are then built by the
	// children (RunChild), from the same tables.
	Children bool
	// Executable is the binary children run; "" means os.Executable().
	Executable string

	lookup resolver // tests; nil means the system resolver
}

// Run is the master: it starts, serves until ctx is cancelled or SIGTERM
// or SIGINT arrives (with Options.Signals), and stops. Start-up errors
// (a configuration error naming file and line, a port in use, another
// master running: ErrRunning) are returned before anything is served; a
// clean stop returns nil.
func Run(ctx context.Context, opts Options) error {
	// Signals are caught before start-up begins, so a SIGTERM that arrives
	// while listeners are being bound stops the master cleanly afterwards
	// instead of killing it half-started.
	var sigs chan os.Signal
	if opts.Signals {
		sigs = make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
		defer signal.Stop(sigs)
	}
	m, err := start(ctx, opts)
	if err != nil {
		return err
	}
	sig := m.loop(ctx, sigs)
	return m.shutdown(sig)
}

// master is one running master process's state.
type master struct {
	opts   Options
	dir    string // absolute configuration directory
	cwd    string
	lookup resolver
	base   *maillog.Logger // root logger, for per-service tags
	log    *maillog.Logger // postfix/master
	queue  *queue.Queue
	pid    *pidLock
	ifs    interfaces
	proto  protocols
	// maillogFile is the start-up maillog_file, which the logger keeps.
	maillogFile string

	mu        sync.Mutex
	listeners map[string]*listener // by endpoint key
	services  map[string]*service  // the current generation, by name/type
	limiters  map[string]*limiter  // by name/type, across generations
	conns     map[net.Conn]struct{}

	acceptWG   sync.WaitGroup
	sessions   sync.WaitGroup
	sessCtx    context.Context
	sessCancel context.CancelFunc

	roles       []Role
	rolesWG     sync.WaitGroup
	rolesCancel context.CancelFunc

	// With Options.Children: the current generation's children by
	// service key, retired ones still finishing, the queue manager.
	kids        map[string]*kid
	retiredKids []*kid
	roleKids    map[string]*kid      // by role name
	unixLns     map[string]*listener // role sockets by path: "private/anvil"
	noRowLogged map[string]bool
	kidsWG      sync.WaitGroup
	gen         int
	fifo        int // QmgrFIFO held open read-write; -1 when none
	wakeStop    chan struct{}

	// In a child: the sockets the master passed, by endpoint key (nil in
	// the master), the gate that holds accepting until privileges are
	// dropped, and the queue manager trigger smtpd writes after commits.
	inherited map[string]net.Listener
	gate      chan struct{}
	trigger   func()
	stress    *stressState
	sockets   map[string]string // role name → private socket path (-p)
}

func start(ctx context.Context, opts Options) (m *master, err error) {
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	m = &master{
		opts: opts, lookup: opts.lookup, listeners: map[string]*listener{},
		services: map[string]*service{}, limiters: map[string]*limiter{},
		conns: map[net.Conn]struct{}{}, fifo: -1,
		roleKids: map[string]*kid{}, unixLns: map[string]*listener{}, noRowLogged: map[string]bool{},
	}
	if m.lookup == nil {
		m.lookup = defaultResolver
	}
	if m.dir, err = filepath.Abs(opts.ConfigDir); err != nil {
		return nil, err
	}
	m.cwd = opts.Dir
	if m.cwd == "" {
		if m.cwd, err = os.Getwd(); err != nil {
			return nil, fmt.Errorf("getcwd: %w", err)
		}
	}
	snap, ifs, proto, err := loadSnapshot(ctx, m.dir, m.cwd, opts.Servers, nil, nil, m.lookup)
	if err != nil {
		return nil, err
	}
	m.ifs, m.proto = ifs, proto
	m.maillogFile = snap.cfg.Get("maillog_file")
	m.base, err = maillog.FromConfig(snap.cfg, maillog.Setup{Daemon: "master", Stderr: opts.Stderr, SyslogPath: opts.SyslogPath})
	if err != nil {
		return nil, fmt.Errorf("maillog: %w", err)
	}
	m.log = m.base
	for _, w := range proto.warnings {
		m.log.Warning("%s", w)
	}
	// From here on, a failure is also logged, as Postfix's msg_fatal does,
	// and what was set up is undone.
	defer func() {
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				m.log.Fatal("%s", line)
			}
			m.undoStart()
		}
	}()

	// The lock comes first: Recover must run alone.
	if m.pid, err = lockPIDFile(filepath.Join(snap.queueDir, PIDFile), os.Getpid()); err != nil {
		return m, err
	}
	qopts, err := queue.OptionsFromConfig(snap.cfg)
	if err != nil {
		return m, err
	}
	qopts.Create = true
	qopts.Logf = m.log.Warning
	if m.queue, err = openQueue(snap.queueDir, qopts, snap.cfg); err != nil {
		return m, err
	}
	if _, err = m.queue.Recover(false); err != nil {
		return m, fmt.Errorf("queue recovery: %w", err)
	}
	m.sessCtx, m.sessCancel = context.WithCancel(context.Background())
	if opts.Children {
		if os.Geteuid() != 0 {
			m.log.Warning("not started as root: every service runs as uid %d, without chroot and without dropping privileges", os.Geteuid())
		}
		owner, _ := snap.cfg.MailOwnerUID()
		if err = m.openTrigger(snap.queueDir, owner); err != nil {
			return m, err
		}
		if err = makeCacheDirs(snap.cfg, owner); err != nil {
			return m, err
		}
		if os.Geteuid() == 0 {
			// Every Postfix daemon refuses an unsafe mail_owner at start
			// (mail_params.c), and postfix-script an unsafe queue; the
			// master does both once, before any child is trusted with it.
			var acct privsep.Account
			if acct, err = privsep.MailOwner(snap.cfg); err != nil {
				return m, err
			}
			if err = errors.Join(privsep.CheckQueue(snap.queueDir, acct)...); err != nil {
				return m, err
			}
		}
	} else if err = m.startRoles(snap); err != nil {
		return m, err
	}
	if err = m.apply(snap); err != nil {
		return m, err
	}
	m.log.Info("daemon started -- version %s, configuration %s", config.Version, m.dir)
	m.logServices(snap)
	m.notify(Ready, nil)
	return m, nil
}

// undoStart releases what a failed start acquired.
func (m *master) undoStart() {
	m.stopKids()
	m.mu.Lock()
	for _, l := range m.listeners {
		l.close()
	}
	for _, s := range m.services {
		s.retire()
	}
	m.mu.Unlock()
	m.acceptWG.Wait()
	if m.sessCancel != nil {
		m.sessCancel()
	}
	m.stopRoles()
	m.closeTrigger()
	if m.pid != nil {
		m.pid.release()
	}
	closeLog(m.base)
}

func closeLog(l *maillog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.Close(ctx)
}

func (m *master) startRoles(snap *snapshot) error {
	ctx, cancel := context.WithCancel(context.Background())
	m.rolesCancel = cancel
	for _, spec := range m.opts.Roles {
		if spec.ChildOnly {
			continue
		}
		r, err := spec.New(RoleDeps{Config: snap.cfg, Log: m.base.With(spec.Name, os.Getpid()), Queue: m.queue})
		if err != nil {
			return fmt.Errorf("%s: %w", spec.Name, err)
		}
		m.roles = append(m.roles, r)
		m.rolesWG.Add(1)
		go func(name string) {
			defer m.rolesWG.Done()
			if err := r.Run(ctx); err != nil && ctx.Err() == nil {
				m.log.Error("%s: %v", name, err)
			}
		}(spec.Name)
	}
	return nil
}

func (m *master) stopRoles() {
	if m.rolesCancel == nil {
		return
	}
	m.rolesCancel()
	done := make(chan struct{})
	go func() { m.rolesWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(m.opts.StopTimeout):
		m.log.Warning("background roles did not stop within %v", m.opts.StopTimeout)
	}
}

// committed wakes every background role, or, in a child, the queue
// manager child through its trigger.
func (m *master) committed(string) {
	if m.trigger != nil {
		m.trigger()
	}
	for _, r := range m.roles {
		r.Wake()
	}
}

func (m *master) notify(kind EventKind, err error) {
	if m.opts.Notify == nil {
		return
	}
	m.opts.Notify(Event{Kind: kind, Addrs: m.Addrs(), Err: err})
}

// Addrs returns the bound addresses by service name.
func (m *master) Addrs() map[string][]net.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]net.Addr{}
	for _, l := range m.listeners {
		s := l.cur.Load()
		out[s.spec.row.Name] = append(out[s.spec.row.Name], l.ln.Addr())
	}
	return out
}

// loop waits for reload and stop requests and returns the number of the
// signal that stops the master (15 when ctx is cancelled: the caller's
// stand-in for SIGTERM).
func (m *master) loop(ctx context.Context, sigs <-chan os.Signal) int {
	for {
		select {
		case <-ctx.Done():
			return int(syscall.SIGTERM)
		case s := <-sigs:
			if s == syscall.SIGHUP {
				m.reload(ctx)
				continue
			}
			return int(s.(syscall.Signal))
		case <-m.opts.Reload:
			m.reload(ctx)
		}
	}
}

// reload re-reads the configuration and, only if all of it is usable
// (parsed, servers built, new ports bound), switches to it.
func (m *master) reload(ctx context.Context) {
	snap, _, _, err := loadSnapshot(ctx, m.dir, m.cwd, m.opts.Servers, &m.ifs, &m.proto, m.lookup)
	if err == nil {
		m.warnIgnored(snap)
		err = m.apply(snap)
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			m.log.Error("reload: %s", line)
		}
		m.log.Warning("reload failed: still running with the previous configuration")
		m.notify(ReloadFailed, err)
		return
	}
	m.log.Info("reload -- version %s, configuration %s", config.Version, m.dir)
	m.notify(Reloaded, nil)
}

// warnIgnored says which changes a reload cannot apply, in master(8)'s
// words for inet_interfaces.
func (m *master) warnIgnored(snap *snapshot) {
	if words, err := snap.cfg.List("inet_interfaces"); err == nil && strings.Join(words, " ") != m.ifs.Raw {
		for _, s := range snap.inet {
			m.log.Warning("service %s: ignoring inet_interfaces change", s.row.Name)
		}
		m.log.Warning("to change inet_interfaces, stop and start Postfix")
	}
	if f := snap.cfg.Get("maillog_file"); f != m.maillogFile {
		m.log.Warning("ignoring maillog_file change to %q: to change maillog_file, stop and start Postfix", f)
	}
	if snap.queueDir != m.queue.Dir() {
		m.log.Warning("ignoring queue_directory change to %s: to change queue_directory, stop and start Postfix", snap.queueDir)
	}
}

// shutdown stops the master: no new connections, sessions cancelled and
// given StopTimeout to end (they acknowledge only committed mail, so
// nothing acknowledged is lost), then the servers, the roles, the PID
// file and the log.
func (m *master) shutdown(sig int) error {
	m.log.Info("terminating on signal %d", sig)
	// Children first: a supervisor may be restarting one with a
	// listener's descriptor.
	m.stopKids()
	m.mu.Lock()
	for _, l := range m.listeners {
		l.close()
	}
	m.mu.Unlock()
	m.acceptWG.Wait()
	m.sessCancel()
	if !waitTimeout(&m.sessions, m.opts.StopTimeout) {
		m.mu.Lock()
		n := len(m.conns)
		for c := range m.conns {
			c.Close()
		}
		m.mu.Unlock()
		m.log.Warning("%d sessions did not end within %v of stop: connections closed", n, m.opts.StopTimeout)
		waitTimeout(&m.sessions, 2*time.Second)
	}
	m.mu.Lock()
	for _, s := range m.services {
		s.retire()
	}
	m.mu.Unlock()
	m.stopRoles()
	m.closeTrigger()
	var errs []error
	if m.pid != nil {
		if err := m.pid.release(); err != nil {
			errs = append(errs, fmt.Errorf("remove PID file: %w", err))
		}
	}
	closeLog(m.base)
	return errors.Join(errs...)
}

// closeTrigger stops the wakeup timer and closes the master's hold on
// the queue manager's FIFO.
func (m *master) closeTrigger() {
	m.setWakeup(0)
	if m.fifo >= 0 {
		syscall.Close(m.fifo)
		m.fifo = -1
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
