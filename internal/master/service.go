package master

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// service is one master.cf inet service in one configuration generation:
// its server and the sessions running on it. A reload makes a new one;
// the old one lives on until its last session ends, then its server is
// closed.
type service struct {
	spec   *serviceSpec
	server ConnServer
	// stressed is the same service built with stress=yes (STRESS_README),
	// used for sessions accepted while the service is at its limit; nil
	// where stress mode does not apply.
	stressed ConnServer
	lim      *limiter

	mu      sync.Mutex
	active  int
	retired bool
	closed  bool
	onClose func(error)
}

// begin counts a session in.
func (s *service) begin() {
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
}

// end counts a session out and closes a retired generation's server after
// its last session.
func (s *service) end() {
	s.mu.Lock()
	s.active--
	doClose := s.retired && s.active == 0 && !s.closed
	if doClose {
		s.closed = true
	}
	s.mu.Unlock()
	if doClose {
		s.close()
	}
}

// retire marks the generation replaced (reload) or finished (stop); its
// server closes now if idle, else when its last session ends.
func (s *service) retire() {
	s.mu.Lock()
	s.retired = true
	doClose := s.active == 0 && !s.closed
	if doClose {
		s.closed = true
	}
	s.mu.Unlock()
	if doClose {
		s.close()
	}
}

func (s *service) close() {
	err := s.server.Close()
	if s.stressed != nil {
		err = errors.Join(err, s.stressed.Close())
	}
	if s.onClose != nil {
		s.onClose(err)
	}
}

// listener is one bound socket. It outlives service generations: a reload
// that keeps its endpoint only changes cur, so the socket (and its listen
// queue) never closes and no client is refused.
type listener struct {
	ep   endpoint
	ln   net.Listener
	cur  atomic.Pointer[service]
	stop chan struct{}
	once sync.Once

	fmu sync.Mutex
	f   *os.File // the socket as passed to children (children.go)
}

func (l *listener) close() {
	l.once.Do(func() {
		close(l.stop)
		l.ln.Close()
		l.fmu.Lock()
		if l.f != nil {
			l.f.Close()
		}
		l.fmu.Unlock()
	})
}

// apply builds a generation from snap and switches to it. Nothing changes
// unless every server is built and every new endpoint bound.
func (m *master) apply(snap *snapshot) error {
	if m.opts.Children {
		return m.applyChildren(snap)
	}
	built := map[string]*service{}
	fail := func(err error) error {
		for _, s := range built {
			s.server.Close()
			if s.stressed != nil {
				s.stressed.Close()
			}
		}
		return err
	}
	for _, spec := range snap.inet {
		log := m.base.WithName(spec.cfg.Get("syslog_name")).With(spec.row.Command, os.Getpid())
		srv, err := spec.factory(ServiceDeps{
			Config: spec.cfg, Service: spec.row.Name, Log: log, Queue: m.queue,
			Committed: m.committed, Now: time.Now,
			AnvilSocket: m.sockets["anvil"], ProxySocket: m.sockets["proxymap"],
		})
		if err != nil {
			return fail(fmt.Errorf("master.cf, line %d: service %s: %w", spec.row.Line, spec.key, err))
		}
		svc := &service{spec: spec, server: srv}
		built[spec.key] = svc
		if m.stress != nil && spec.maxproc > 1 {
			// Built now, with the normal one, because a jailed child
			// cannot open tables later.
			scfg := spec.cfg.WithOverrides(map[string]string{"stress": "yes"})
			svc.stressed, err = spec.factory(ServiceDeps{
				Config: scfg, Service: spec.row.Name, Log: log, Queue: m.queue,
				Committed: m.committed, Now: time.Now,
				AnvilSocket: m.sockets["anvil"], ProxySocket: m.sockets["proxymap"],
			})
			if err != nil {
				return fail(fmt.Errorf("master.cf, line %d: service %s (stress=yes): %w", spec.row.Line, spec.key, err))
			}
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	var fresh []*listener
	keep := map[string]*listener{}
	for _, spec := range snap.inet {
		for _, ep := range spec.eps {
			if l, ok := m.listeners[ep.Key()]; ok {
				keep[ep.Key()] = l
				continue
			}
			ln, err := m.listen(ep)
			if err != nil {
				for _, l := range fresh {
					l.ln.Close()
				}
				return fail(fmt.Errorf("master.cf, line %d: service %s: %w", spec.row.Line, spec.key, err))
			}
			l := &listener{ep: ep, ln: ln, stop: make(chan struct{})}
			fresh = append(fresh, l)
			keep[ep.Key()] = l
		}
	}

	// Commit: limits, then listeners, then the old generation's retirement.
	// A raised maxproc takes effect only after the listeners point at the
	// new generation: setMax wakes connections waiting for a slot, and
	// one woken earlier would still find the old generation and be
	// served on the old configuration.
	limiters := map[string]*limiter{}
	var raise []func()
	for key, s := range built {
		lim := m.limiters[key]
		if lim == nil {
			lim = newLimiter(s.spec.maxproc)
		} else {
			n := s.spec.maxproc
			raise = append(raise, func() { lim.setMax(n) })
		}
		s.lim = lim
		limiters[key] = lim
		s.onClose = m.closeLogger(key)
	}
	for _, spec := range snap.inet {
		for _, ep := range spec.eps {
			l := keep[ep.Key()]
			if old := l.cur.Swap(built[spec.key]); old != nil && old.lim != built[spec.key].lim {
				old.lim.wake()
			}
		}
	}
	for _, f := range raise {
		f()
	}
	for key, l := range m.listeners {
		if _, ok := keep[key]; !ok {
			l.close()
		}
	}
	for _, l := range fresh {
		m.acceptWG.Add(1)
		go m.acceptLoop(l)
	}
	old := m.services
	m.listeners, m.services, m.limiters = keep, built, limiters
	for _, s := range old {
		s.retire()
	}
	return nil
}

// listen binds ep, or, in a child, takes the socket the master bound for
// it and passed down.
func (m *master) listen(ep endpoint) (net.Listener, error) {
	if ln, ok := m.inherited[ep.Key()]; ok {
		delete(m.inherited, ep.Key())
		return ln, nil
	}
	if m.inherited != nil {
		return nil, fmt.Errorf("no socket inherited for %s", ep.Addr)
	}
	// After a crash (the master SIGKILLed), its children die with it by
	// their parent-death signal, but their sockets close a moment after
	// the master is reaped; a restart that binds at once would fail.
	// So an address in use is tried again for a short while.
	deadline := time.Now().Add(bindRetry)
	for {
		ln, err := net.Listen(ep.Network, ep.Addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return ln, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bindRetry bounds how long an address in use is retried (see listen).
const bindRetry = 2 * time.Second

// closeLogger reports a server's Close error.
func (m *master) closeLogger(key string) func(error) {
	return func(err error) {
		if err != nil {
			m.log.Warning("service %s: close: %v", key, err)
		}
	}
}

// acceptLoop accepts on one listener for as long as it is configured.
// When the current service is at its maxproc, the accepted connection
// waits (before any greeting) and nothing more is accepted, so further
// clients wait in the kernel's listen queue, as master(8) does by not
// listening while a service has no free process.
func (m *master) acceptLoop(l *listener) {
	defer m.acceptWG.Done()
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-l.stop:
			return
		}
	}
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: wait, rather than spin, for a session to
			// end and free a descriptor.
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			m.log.Warning("accept %s: %v", l.ep.Addr, err)
			select {
			case <-time.After(backoff):
			case <-l.stop:
				return
			}
			continue
		}
		backoff = 0
		s := m.acquire(l)
		if s == nil {
			c.Close()
			return
		}
		m.serve(s, c)
	}
}

// acquire waits for a free session slot in the listener's current
// service and returns that service, or nil when the listener closes.
func (m *master) acquire(l *listener) *service {
	for {
		s := l.cur.Load()
		ok, wait := s.lim.tryAcquire()
		if ok {
			return s
		}
		m.stressOn(s)
		if s.lim.shouldWarn(time.Now()) {
			// master_spawn.c's words.
			m.log.Warning("service \"%s\" (%s) has reached its process limit \"%d\": new clients may experience noticeable delays",
				s.spec.row.Name, s.spec.internal, s.spec.maxproc)
			m.log.Warning("to avoid this condition, increase the process count in master.cf or reduce the service time per client")
			if s.stressed != nil {
				m.log.Warning("see http://www.postfix.org/STRESS_README.html for examples of stress-adapting configuration settings")
			}
		}
		select {
		case <-wait:
		case <-l.stop:
			return nil
		}
	}
}

// serve runs one session on s, which already holds a slot for it.
func (m *master) serve(s *service, c net.Conn) {
	s.begin()
	m.sessions.Add(1)
	m.mu.Lock()
	m.conns[c] = struct{}{}
	m.mu.Unlock()
	srv := s.server
	if s.stressed != nil && m.stress.active() {
		srv = s.stressed
	}
	go func() {
		defer m.sessions.Done()
		defer m.stressOff(s)
		defer s.lim.release()
		defer s.end()
		defer func() {
			c.Close()
			m.mu.Lock()
			delete(m.conns, c)
			m.mu.Unlock()
		}()
		srv.ServeConn(m.sessCtx, c)
	}()
}
