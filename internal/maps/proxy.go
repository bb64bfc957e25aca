package maps

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"moat/internal/proxymap/wire"
)

// proxyTimeout bounds one request to the proxymap server. Postfix's client
// waits ipc_timeout (an hour); a lookup stuck that long would hold an SMTP
// session for nothing, so moat gives up sooner and reports a temporary
// failure, which defers the mail instead of losing it.
const proxyTimeout = 30 * time.Second

// proxyMaxConns bounds the connections one proxy table opens to the
// server: concurrent lookups beyond it wait for a connection to come free
// (each takes microseconds) rather than dial and hang up again, which
// under load cost more than the lookups themselves.
const proxyMaxConns = 8

// proxyIdle is how long an unused connection is kept: Postfix's ipc_idle
// default. Without it every jailed process would hold its connections to
// the proxymap server for its whole life, and the server's descriptors
// would grow with the number of processes rather than with the load.
const proxyIdle = 5 * time.Second

// proxyDenyHold is how long a refusal ("not approved in proxy_read_maps")
// is remembered before the server is asked again. Postfix's client exits
// on the first refusal, and the master's restart back-off paces the
// server's warnings; moat's client stays up and answers from memory
// instead, so one misconfigured table does not flood the log.
const proxyDenyHold = time.Minute

// proxyTable is a "proxy:TYPE:NAME" table served by proxymap(8) over a
// UNIX socket. It connects at the first request, not at open, so a daemon
// can open its tables and then chroot; it keeps a few connections for
// reuse and is safe for concurrent use.
type proxyTable struct {
	socket string
	inner  string // "TYPE:NAME", the name the server approves and opens
	flags  wire.Flags

	kind atomic.Int32 // kindUnknown, kindFixed or kindPattern

	// slots holds one token per connection that may be in use; a request
	// takes one for its duration.
	slots chan struct{}

	mu          sync.Mutex
	idle        []*proxyConn // most recently used last
	reaper      *time.Timer  // closes connections idle for proxyIdle
	closed      bool
	deniedUntil time.Time
}

const (
	kindUnknown int32 = iota
	kindFixed
	kindPattern
)

// proxyConn is one connection to the server with its read buffer.
type proxyConn struct {
	c    net.Conn
	r    *bufio.Reader
	used time.Time // when it last finished a request
}

// openProxy opens "proxy:" + name. Postfix strips repeated "proxy:"
// prefixes (proxymap(8) canonicalizes the name the same way), so the
// inner table is never itself a proxy.
func openProxy(name string, opts Options) (Table, error) {
	inner := name
	for strings.HasPrefix(inner, "proxy:") {
		inner = inner[len("proxy:"):]
	}
	if _, _, err := Split(inner); err != nil {
		return nil, fmt.Errorf("proxy:%s: %w", name, err)
	}
	if opts.ProxySocket == "" {
		return Open(inner, opts)
	}
	t := &proxyTable{socket: opts.ProxySocket, inner: inner, slots: make(chan struct{}, proxyMaxConns)}
	if opts.Fold {
		t.flags |= wire.FlagFold
	}
	if opts.UTF8 {
		t.flags |= wire.FlagUTF8
	}
	return t, nil
}

// Lookup implements Table. Anything but a found or missing key is a
// temporary failure, the maps contract: a server that is down, refuses the
// table or cannot open it defers mail rather than rejecting it.
func (t *proxyTable) Lookup(key string) (string, bool, error) {
	rep, err := t.call(wire.Request{Op: wire.OpLookup, Flags: t.flags, Table: t.inner, Key: key})
	if err != nil {
		return "", false, err
	}
	switch rep.Status {
	case wire.StatusOK:
		t.learnKind(rep.Flags)
		return rep.Value, true, nil
	case wire.StatusNoKey:
		t.learnKind(rep.Flags)
		return "", false, nil
	}
	return "", false, t.statusErr(rep)
}

// Pattern implements Table with the inner table's kind, asked of the
// server the first time it is needed. When the server cannot answer yet,
// the kind follows from the table type (regexp, pcre and cidr match
// patterns), which is what the server would say.
func (t *proxyTable) Pattern() bool {
	switch t.kind.Load() {
	case kindFixed:
		return false
	case kindPattern:
		return true
	}
	rep, err := t.call(wire.Request{Op: wire.OpOpen, Flags: t.flags, Table: t.inner})
	if err == nil && rep.Status == wire.StatusOK {
		t.learnKind(rep.Flags)
		return rep.Flags&wire.FlagPattern != 0
	}
	typ, _, _ := Split(t.inner)
	switch typ {
	case "regexp", "pcre", "cidr":
		return true
	}
	return false
}

// Close implements Table: idle connections are closed; ones in use are
// closed when their request ends.
func (t *proxyTable) Close() error {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.closed = nil, true
	if t.reaper != nil {
		t.reaper.Stop()
	}
	t.mu.Unlock()
	for _, c := range idle {
		c.c.Close()
	}
	return nil
}

func (t *proxyTable) learnKind(f wire.Flags) {
	if f&wire.FlagPattern != 0 {
		t.kind.Store(kindPattern)
	} else {
		t.kind.Store(kindFixed)
	}
}

// statusErr words a failure reply. The refusal keeps Postfix's client
// text ("proxymap service is not configured for table"), which Postfix
// makes fatal; here it is a temporary failure like every other.
func (t *proxyTable) statusErr(rep wire.Reply) error {
	switch rep.Status {
	case wire.StatusDeny:
		return fmt.Errorf("proxymap service is not configured for table \"%s\"", t.inner)
	case wire.StatusRetry:
		return fmt.Errorf("proxy:%s: lookup failed: %s", t.inner, rep.Value)
	case wire.StatusBad:
		return fmt.Errorf("proxy:%s: proxymap server refused the request as malformed", t.inner)
	}
	return fmt.Errorf("proxy:%s: unexpected proxymap status %s", t.inner, rep.Status)
}

// call sends one request and returns the reply. A connection taken from
// the idle list may have been closed by the server meanwhile (it
// restarted, or was reloaded); such a failure is retried once on a fresh
// connection. A fresh connection that fails is reported.
func (t *proxyTable) call(req wire.Request) (wire.Reply, error) {
	timer := time.NewTimer(proxyTimeout)
	select {
	case t.slots <- struct{}{}:
		timer.Stop()
	case <-timer.C:
		return wire.Reply{}, fmt.Errorf("proxy:%s: timed out waiting for a proxymap connection", t.inner)
	}
	defer func() { <-t.slots }()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return wire.Reply{}, fmt.Errorf("proxy:%s: table is closed", t.inner)
	}
	if time.Now().Before(t.deniedUntil) {
		t.mu.Unlock()
		return wire.Reply{Status: wire.StatusDeny}, nil
	}
	var c *proxyConn
	if n := len(t.idle); n > 0 {
		c = t.idle[n-1]
		t.idle = t.idle[:n-1]
	}
	t.mu.Unlock()

	reused := c != nil
	if !reused {
		var err error
		if c, err = t.dial(); err != nil {
			return wire.Reply{}, err
		}
	}
	rep, err := c.exchange(req)
	if err != nil && reused && !isTimeout(err) {
		c.c.Close()
		if c, err = t.dial(); err != nil {
			return wire.Reply{}, err
		}
		rep, err = c.exchange(req)
	}
	if err != nil {
		c.c.Close()
		return wire.Reply{}, fmt.Errorf("proxy:%s: proxymap service %s: %w", t.inner, t.socket, err)
	}
	t.release(c, rep.Status == wire.StatusDeny)
	return rep, nil
}

// release returns a healthy connection to the idle list (or closes it
// when the table was closed meanwhile) and remembers a refusal.
func (t *proxyTable) release(c *proxyConn, denied bool) {
	t.mu.Lock()
	if denied {
		t.deniedUntil = time.Now().Add(proxyDenyHold)
	}
	if !t.closed && len(t.idle) < proxyMaxConns {
		c.used = time.Now()
		t.idle = append(t.idle, c)
		c = nil
		if t.reaper == nil {
			t.reaper = time.AfterFunc(proxyIdle, t.reap)
		}
	}
	t.mu.Unlock()
	if c != nil {
		c.c.Close()
	}
}

// reap closes the connections that have been idle for proxyIdle and
// comes back while any remain.
func (t *proxyTable) reap() {
	t.mu.Lock()
	cut := time.Now().Add(-proxyIdle)
	n := 0
	for n < len(t.idle) && !t.idle[n].used.After(cut) {
		n++
	}
	old := slices.Clone(t.idle[:n])
	t.idle = slices.Delete(t.idle, 0, n)
	if len(t.idle) > 0 && !t.closed {
		t.reaper.Reset(time.Until(t.idle[0].used.Add(proxyIdle)))
	} else {
		t.reaper = nil
	}
	t.mu.Unlock()
	for _, c := range old {
		c.c.Close()
	}
}

// isTimeout tells a server that is slow (asking again would only double
// the wait) from a connection that broke.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (t *proxyTable) dial() (*proxyConn, error) {
	c, err := net.DialTimeout("unix", t.socket, proxyTimeout)
	if err != nil {
		return nil, fmt.Errorf("proxy:%s: connect to proxymap service: %w", t.inner, err)
	}
	return &proxyConn{c: c, r: bufio.NewReader(c)}, nil
}

// exchange sends req and reads its reply within proxyTimeout.
func (c *proxyConn) exchange(req wire.Request) (wire.Reply, error) {
	if err := c.c.SetDeadline(time.Now().Add(proxyTimeout)); err != nil {
		return wire.Reply{}, err
	}
	if err := wire.WriteRequest(c.c, req); err != nil {
		return wire.Reply{}, err
	}
	rep, err := wire.ReadReply(c.r)
	if errors.Is(err, wire.ErrFrame) {
		return wire.Reply{}, fmt.Errorf("bad reply: %w", err)
	}
	return rep, err
}

// WithProxySocket returns o with ProxySocket set to path: a jailed
// daemon's master hands it the proxymap socket this way, on top of what
// DaemonOptions decides, so every daemon still gets its options from that
// one place.
func (o Options) WithProxySocket(path string) Options {
	o.ProxySocket = path
	return o
}
