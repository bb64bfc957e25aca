package qmgr

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/maillog"
	"moat/internal/mastercf"
)

// AgentFactory builds the delivery agent of one master.cf service from
// the service's parameters and arguments (internal/delivery/local,
// virtual, pipe, lmtp). The process that runs the queue manager supplies
// them by command name, so this package does not depend on every agent.
type AgentFactory func(delivery.Deps) (delivery.Agent, error)

// transport is one master.cf service the queue manager delivers through:
// its agent, its limits and its logger.
type transport struct {
	name    string // master.cf service name: "local", "dovecot"
	command string // master.cf command: "local", "pipe", "discard"
	agent   delivery.Agent
	// unavailable, when set, is why the transport cannot deliver (its
	// agent failed to start, or moat has no agent for the command yet):
	// its recipients are deferred with this reason, as Postfix's qmgr
	// defers mail for a transport whose daemon keeps failing.
	unavailable string
	log         *maillog.Logger
	// rcptLimit is <transport>_destination_recipient_limit: recipients
	// per delivery request. With 1, each recipient is its own
	// destination for the concurrency limit (qmgr(8)).
	rcptLimit int
	limits    *limiter
	mu        sync.Mutex // guards agent against Close
	// build makes the agent at the transport's first request, so that a
	// stock master.cf row for software this host lacks (maildrop's
	// user=vmail) costs nothing until mail is routed to it, as in Postfix.
	build func() (delivery.Agent, error)
	once  sync.Once
	mgr   *Manager
}

// ready builds the agent on first use; a transport whose agent cannot be
// built is logged once and stays unavailable.
func (t *transport) ready() {
	t.once.Do(func() {
		if t.build == nil {
			return
		}
		a, err := t.build()
		if err != nil {
			t.mgr.log.Warning("transport %s: %v; its mail is deferred until this is fixed", t.name, err)
			t.unavailable = "mail transport unavailable"
			return
		}
		t.mu.Lock()
		t.agent = a
		t.mu.Unlock()
	})
}

// builtinCommands are the agents the queue manager runs itself: they need
// no privileges and no I/O beyond the queue (discard(8), error(8) and
// error(8) as retry).
func builtinCommand(command string) bool {
	return command == "discard" || command == "error" || command == "retry"
}

// defaultServices are the delivery transports of Postfix's stock
// master.cf. moat runs them even when master.cf leaves their rows out (as
// it runs qmgr and anvil without rows), so a master.cf listing only smtpd
// still delivers; a row of the same name replaces the default.
func defaultServices() []*mastercf.Service {
	var out []*mastercf.Service
	for _, n := range []string{"local", "virtual", "lmtp", "smtp", "relay", "discard", "error", "retry", "pipe"} {
		cmd := n
		switch n {
		case "relay":
			cmd = "smtp"
		case "retry":
			cmd = "error"
		}
		out = append(out, &mastercf.Service{Name: n, Type: "unix", Maxproc: "-", Command: cmd})
	}
	return out
}

// loadServices reads master.cf's unix services from the configuration
// directory, followed by the stock delivery services it does not define.
func loadServices(cfg *config.Config) ([]*mastercf.Service, error) {
	dir := cfg.Get("config_directory")
	mf, err := mastercf.Load(filepath.Join(dir, "master.cf"))
	var out []*mastercf.Service
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		for _, s := range mf.Services {
			if s.Type == "unix" {
				out = append(out, s)
			}
		}
	}
	// buildTransports keeps the first of duplicate names: master.cf's.
	return append(out, defaultServices()...), nil
}

// buildTransports creates every delivery transport master.cf defines.
// A transport whose agent cannot be built is logged and kept as
// unavailable, so one broken pipe service defers its own mail but does not
// stop delivery for the others.
func (m *Manager) buildTransports(d Deps) error {
	services, err := loadServices(d.Config)
	if err != nil {
		return fmt.Errorf("qmgr: %w", err)
	}
	defProcs, err := d.Config.Int("default_process_limit")
	if err != nil {
		return fmt.Errorf("qmgr: default_process_limit: %w", err)
	}
	self := d.Self
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return fmt.Errorf("qmgr: locating the moat binary: %w", err)
		}
	}
	pid := os.Getpid()
	m.transports = map[string]*transport{}
	for _, s := range services {
		if _, dup := m.transports[s.Name]; dup {
			continue // master(8) uses the first of duplicate names
		}
		agentCmd := s.Command
		switch agentCmd {
		case "local", "virtual", "lmtp", "smtp", "pipe", "discard", "error":
		default:
			continue // not a delivery agent (smtpd, cleanup, ...)
		}
		d.Config.AddServiceParams(s.Name, s.Command)
		cfg := d.Config.WithOverrides(s.DaemonOverrides())
		log := d.Log.With(s.Command, pid)
		if n := cfg.Get("syslog_name"); n != d.Config.Get("syslog_name") {
			log = log.WithName(n)
		}
		if s.Name == "retry" && s.Command == "error" {
			agentCmd = "retry" // error(8) run as retry(8) defers (master.cf)
		}
		t := &transport{name: s.Name, command: agentCmd, log: log}
		if t.rcptLimit, err = transportInt(cfg, s.Name, "destination_recipient_limit"); err != nil {
			return err
		}
		sched, err := loadSchedParams(cfg, s.Name)
		if err != nil {
			return err
		}
		procs := int(defProcs)
		if s.Maxproc != "-" && s.Maxproc != "" {
			if procs, err = strconv.Atoi(s.Maxproc); err != nil || procs < 0 {
				return fmt.Errorf("qmgr: master.cf, line %d: bad maxproc %q", s.Line, s.Maxproc)
			}
			if procs == 0 { // master(5): 0 means no limit
				procs = maxProcs
			}
		}
		t.limits = newLimiter(min(procs, maxProcs), sched)
		if t.rcptLimit <= 0 {
			t.rcptLimit = maxRecipientsPerRequest
		}
		if !builtinCommand(agentCmd) {
			factory := d.Agents[s.Command]
			switch {
			case factory == nil:
				t.unavailable = "delivery via " + s.Command + " is not available yet in this version of moat"
			default:
				deps := delivery.Deps{
					Config: cfg, Service: s.Name, Args: s.Args, Log: log,
					Queue: d.Queue, Rewrite: d.Rewrite, Wake: m.Wake, Self: self,
					ProxySocket: d.ProxySocket, SpawnSocket: d.SpawnSocket, Now: m.now,
				}
				t.build = func() (delivery.Agent, error) { return factory(deps) }
				t.mgr = m
			}
		}
		m.transports[s.Name] = t
	}
	return nil
}

// maxProcs caps a transport's deliveries in progress whatever maxproc
// says: each one may be a child process.
const maxProcs = 64

// maxRecipientsPerRequest caps a request when the recipient limit is 0
// (no limit in Postfix).
const maxRecipientsPerRequest = 1000

// transportInt reads <service>_<suffix> (postconf(5) "transport_"
// parameters), or default_<suffix> for a service Postfix derives none for
// (discard).
func transportInt(cfg *config.Config, service, suffix string) (int, error) {
	name := service + "_" + suffix
	if !cfg.IsBuiltin(name) {
		name = "default_" + suffix
	}
	v, err := cfg.Int(name)
	if err != nil {
		return 0, fmt.Errorf("qmgr: %s: %w", name, err)
	}
	return int(v), nil
}

// closeTransports releases every agent.
func (m *Manager) closeTransports() error {
	var errs []error
	for _, t := range m.transports {
		t.mu.Lock()
		if t.agent != nil {
			errs = append(errs, t.agent.Close())
			t.agent = nil
		}
		t.mu.Unlock()
	}
	return errors.Join(errs...)
}
