package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/mastercf"
	"moat/internal/queue"
)

// ChildOptions are what the master tells a child on its command line
// (childArgs) plus the servers and roles the binary knows.
type ChildOptions struct {
	ConfigDir string
	Dir       string // the master's working directory
	Service   string // master.cf "name/type"
	Gen       int
	// Unpriv runs the child as mail_owner (master.cf unpriv y); Jail
	// chroots it into queue_directory (chroot y).
	Unpriv, Jail bool
	Internal     string   // Postfix's endpoint name, for the limit warning
	Listen       []string // endpoint keys of fds 4, 5, ...
	Role         string   // "qmgr" for the queue manager; "" for a server
	// Sockets are the role services' sockets by role name, relative to
	// the queue directory ("anvil" → "private/anvil"); a jailed child
	// uses them as they are, from its root, others join them to the
	// queue directory.
	Sockets    map[string]string
	Stderr     bool
	SyslogPath string
	Servers    map[string]ServerFactory
	Roles      []RoleSpec
}

// RunChild is one master.cf service in a child process: it opens what it
// needs as root (log, queue, tables, the qmgr trigger, the inherited
// listeners), drops privileges as the master decided, says ready on fd 3,
// and serves until SIGTERM (stop: sessions cancelled, bounded) or SIGUSR1
// (retire after a reload: accept no more, let sessions finish).
func RunChild(opts ChildOptions) error {
	ready := os.NewFile(childReadyFD, "ready")
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	c, err := startChild(opts)
	if err != nil {
		if ready != nil {
			io.WriteString(ready, err.Error()+"\n")
			ready.Close()
		}
		return err
	}
	io.WriteString(ready, "ready\n")
	ready.Close()
	return c.serve(sigs)
}

// child is a running child's state.
type child struct {
	m    *master
	role Role
}

func startChild(opts ChildOptions) (_ *child, err error) {
	dir, err := filepath.Abs(opts.ConfigDir)
	if err != nil {
		return nil, err
	}
	cfg, row, err := childConfig(dir, opts.Service)
	if err != nil {
		return nil, err
	}
	qdir := cfg.Get("queue_directory")
	if !filepath.IsAbs(qdir) {
		qdir = filepath.Join(opts.Dir, qdir)
	}
	command := opts.Role
	if command == "" {
		if row == nil {
			return nil, fmt.Errorf("service %s: not in master.cf", opts.Service)
		}
		command = row.Command
	}
	base, err := maillog.FromConfig(cfg, maillog.Setup{Daemon: command, Stderr: opts.Stderr, SyslogPath: opts.SyslogPath})
	if err != nil {
		return nil, fmt.Errorf("maillog: %w", err)
	}
	defer func() {
		if err != nil {
			base.Fatal("%v", err)
			closeLog(base)
		}
	}()
	// A child that is jailed or drops to mail_owner reaches the queue as
	// "." (the jail's "/", or the queue directory it works in: mail_owner
	// may not be able to traverse the path above it), so it opens it from
	// there. Tables are still opened from the master's working directory,
	// as with the in-process master; a root, unjailed child (the queue
	// manager with its local agent) stays there and uses absolute queue
	// paths, so mail_spool_directory resolves as before.
	qpath := qdir
	if (opts.Jail || opts.Unpriv) && os.Geteuid() == 0 {
		qpath = "."
		if err := os.Chdir(qdir); err != nil {
			return nil, fmt.Errorf("chdir %s: %w", qdir, err)
		}
	}
	sockets := map[string]string{}
	for name, p := range opts.Sockets {
		if qpath != "." {
			p = filepath.Join(qdir, p)
		}
		sockets[name] = p
	}
	qopts, err := queue.OptionsFromConfig(cfg)
	if err != nil {
		return nil, err
	}
	qopts.Logf = base.Warning
	if os.Geteuid() == 0 {
		uid, ok := cfg.MailOwnerUID()
		if !ok || uid == 0 {
			return nil, fmt.Errorf("file %s: parameter mail_owner: %q is not an unprivileged account", cfg.Path, cfg.Get("mail_owner"))
		}
		qopts.Owner, qopts.OwnerSet = uid, true
	}
	q, err := queue.Open(qpath, qopts)
	if err != nil {
		return nil, err
	}
	if qpath == "." {
		// Tables are opened from where the master runs.
		if err := os.Chdir(opts.Dir); err != nil {
			return nil, fmt.Errorf("chdir %s: %w", opts.Dir, err)
		}
	}
	m := &master{
		opts: Options{StopTimeout: DefaultStopTimeout}, dir: dir, cwd: opts.Dir,
		base: base, log: base, queue: q, listeners: map[string]*listener{},
		services: map[string]*service{}, limiters: map[string]*limiter{},
		conns: map[net.Conn]struct{}{}, fifo: -1, gate: make(chan struct{}),
		sockets: sockets,
	}
	m.sessCtx, m.sessCancel = context.WithCancel(context.Background())
	c := &child{m: m}

	if opts.Role != "" {
		var spec *RoleSpec
		for i := range opts.Roles {
			if opts.Roles[i].Name == opts.Role {
				spec = &opts.Roles[i]
			}
		}
		if spec == nil {
			return nil, fmt.Errorf("unknown role %q", opts.Role)
		}
		deps := RoleDeps{Config: cfg, Log: base, Queue: q, ProxySocket: sockets["proxymap"], SpawnSocket: sockets["local"]}
		if len(opts.Listen) > 0 {
			f := os.NewFile(childFirstLFD, "listener")
			if f == nil {
				return nil, fmt.Errorf("listener %s: descriptor not inherited", opts.Listen[0])
			}
			deps.Listener, err = net.FileListener(f)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("listener %s: %w", opts.Listen[0], err)
			}
		}
		if c.role, err = spec.New(deps); err != nil {
			return nil, fmt.Errorf("%s: %w", spec.Name, err)
		}
		if opts.Role == "local" {
			// The delivery executor (asuser.Serve) is latency-bound:
			// each job blocks in a few system calls on one credentialed
			// thread, so Ps beyond two only add scheduler and sysmon
			// wake-ups and futex hand-offs between threads (GOMAXPROCS=1
			// cut its CPU per delivery by ~17 %). But a goroutine
			// blocked in a system call keeps its P until sysmon takes it
			// back, up to 10 ms later when sysmon has been idle: with
			// one P, the commits' fsyncs (maildir.Commit) held up the
			// answers to new requests. Two Ps: 4.1-4.3 s for the
			// benchmark's 5000 deliveries against 4.6-4.8 s with one and
			// 4.8-4.9 s with four (docs/BENCHMARKS.md, issue 5, sixth
			// pass).
			runtime.GOMAXPROCS(2)
		}
		if opts.Role == "qmgr" {
			// Read-write, so the FIFO never reports end of file.
			if m.fifo, err = syscall.Open(filepath.Join(qdir, QmgrFIFO), syscall.O_RDWR|syscall.O_CLOEXEC, 0); err != nil {
				return nil, fmt.Errorf("open %s: %w", QmgrFIFO, err)
			}
		}
	} else {
		if err := c.buildServer(opts, cfg, row, qdir); err != nil {
			return nil, err
		}
	}
	if qpath == "." {
		if err := os.Chdir(qdir); err != nil {
			return nil, fmt.Errorf("chdir %s: %w", qdir, err)
		}
	}
	ppid := os.Getppid()
	if err := dropPrivileges(cfg, opts.Unpriv, opts.Jail, qdir); err != nil {
		return nil, err
	}
	// Changing credentials clears the parent-death signal the master
	// asked for (prctl(2), PR_SET_PDEATHSIG); ask again, and leave if
	// the master died in between.
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); e != 0 {
		return nil, fmt.Errorf("prctl(PR_SET_PDEATHSIG): %w", e)
	}
	if os.Getppid() != ppid {
		return nil, errors.New("the master exited while this child started")
	}
	close(m.gate)
	return c, nil
}

// childConfig is main.cf with the service's master.cf -o overrides, as
// the master read it; row is nil for a role with no master.cf row.
func childConfig(dir, key string) (*config.Config, *mastercf.Service, error) {
	cfg, err := config.Load(dir)
	if err != nil {
		return nil, nil, err
	}
	mf, err := mastercf.Load(filepath.Join(dir, "master.cf"))
	if err != nil {
		return nil, nil, err
	}
	var row *mastercf.Service
	for _, s := range mf.Services {
		cfg.AddServiceParams(s.Name, s.Command)
		if s.Name+"/"+s.Type == key && row == nil {
			row = s
		}
	}
	if row != nil {
		cfg = cfg.WithOverrides(row.DaemonOverrides())
	}
	return cfg, row, nil
}

// buildServer takes the inherited sockets and builds the server (and its
// stress=yes twin) on them, accepting only once the gate opens.
func (c *child) buildServer(opts ChildOptions, cfg *config.Config, row *mastercf.Service, qdir string) error {
	m := c.m
	factory, ok := opts.Servers[row.Command]
	if !ok {
		return fmt.Errorf("master.cf, line %d: command %q is not a server moat can run", row.Line, row.Command)
	}
	defProc, err := cfg.Int("default_process_limit")
	if err != nil {
		return err
	}
	maxproc := int(defProc)
	if row.Maxproc != "-" {
		if maxproc, err = strconv.Atoi(row.Maxproc); err != nil {
			return fmt.Errorf("master.cf, line %d: bad maxproc %q", row.Line, row.Maxproc)
		}
	}
	m.inherited = map[string]net.Listener{}
	spec := &serviceSpec{row: row, key: opts.Service, internal: opts.Internal, cfg: cfg, maxproc: maxproc, factory: factory}
	for i, key := range opts.Listen {
		f := os.NewFile(uintptr(childFirstLFD+i), "listener")
		if f == nil {
			return fmt.Errorf("listener %s: descriptor %d not inherited", key, childFirstLFD+i)
		}
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("listener %s: %w", key, err)
		}
		m.inherited[key] = ln
		ep, err := parseEndpointKey(key)
		if err != nil {
			return err
		}
		spec.eps = append(spec.eps, ep)
	}
	fd, err := OpenTrigger(qdir)
	if err != nil {
		m.log.Warning("%v: the queue manager finds new mail at its next scan", err)
	}
	m.fifo = fd
	m.trigger = func() { Trigger(fd, TriggerIncoming) }
	m.stress = &stressState{}
	return m.apply(&snapshot{cfg: cfg, inet: []*serviceSpec{spec}})
}

// parseEndpointKey reverses endpoint.Key.
func parseEndpointKey(key string) (endpoint, error) {
	for i := 0; i < len(key); i++ {
		if key[i] == ' ' {
			return endpoint{Network: key[:i], Addr: key[i+1:]}, nil
		}
	}
	return endpoint{}, fmt.Errorf("bad listener key %q", key)
}

// serve runs until a signal ends the child.
func (c *child) serve(sigs <-chan os.Signal) error {
	m := c.m
	if c.role != nil {
		return c.serveRole(sigs)
	}
	for s := range sigs {
		switch s {
		case syscall.SIGUSR1:
			// Retired by a reload: the next generation accepts on the same
			// sockets; this one finishes its sessions, however long
			// smtpd_timeout lets them run, then exits.
			m.mu.Lock()
			for _, l := range m.listeners {
				l.close()
			}
			m.mu.Unlock()
			m.acceptWG.Wait()
			select {
			case <-waitChan(&m.sessions):
			case s2 := <-sigs:
				if s2 != syscall.SIGTERM && s2 != syscall.SIGINT {
					<-waitChan(&m.sessions)
					break
				}
				return m.shutdownChild(int(s2.(syscall.Signal)))
			}
			return m.shutdownChild(0)
		case syscall.SIGTERM, syscall.SIGINT:
			return m.shutdownChild(int(s.(syscall.Signal)))
		}
	}
	return nil
}

// shutdownChild stops a server child; sig 0 means retired and idle.
func (m *master) shutdownChild(sig int) error {
	if sig == 0 {
		m.mu.Lock()
		for _, s := range m.services {
			s.retire()
		}
		m.mu.Unlock()
		m.closeTrigger()
		closeLog(m.base)
		return nil
	}
	return m.shutdown(sig)
}

func waitChan(wg interface{ Wait() }) <-chan struct{} {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	return ch
}

// serveRole runs the queue manager until SIGTERM or SIGUSR1, waking it
// for each byte on its FIFO.
func (c *child) serveRole(sigs <-chan os.Signal) error {
	m := c.m
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if m.fifo < 0 {
			return
		}
		buf := make([]byte, 64)
		for {
			n, err := syscall.Read(m.fifo, buf)
			if err != nil {
				if errors.Is(err, syscall.EINTR) {
					continue
				}
				return
			}
			if n > 0 {
				c.role.Wake()
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- c.role.Run(ctx) }()
	var err error
	select {
	case s := <-sigs:
		m.log.Info("terminating on signal %d", int(s.(syscall.Signal)))
		cancel()
		err = <-done
	case err = <-done:
		if err != nil {
			m.log.Error("%v", err)
		}
	}
	closeLog(m.base)
	return err
}
