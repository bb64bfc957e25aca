package policy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"moat/internal/maillog"
)

// maxIdleConns bounds the idle connections a Client keeps. Postfix's smtpd
// is one process per session with one connection per policy server; moat's
// smtpd serves many sessions in one process, so a Client keeps a few
// connections for them to share instead.
const maxIdleConns = 16

// Pool holds one Client per distinct Settings, shared by the sessions of a
// service, so that connections are reused across sessions as a Postfix
// smtpd process reuses its policy connection across SMTP sessions. A Pool
// is safe for concurrent use.
type Pool struct {
	mu      sync.Mutex
	clients map[Settings]*Client
	log     *maillog.Logger
	closed  bool
}

// NewPool returns an empty Pool that does not log; see SetLog.
func NewPool() *Pool {
	return &Pool{clients: make(map[Settings]*Client)}
}

// SetLog sets where the Pool's clients log Postfix's "problem talking to
// server" warnings; nil stops logging. It applies to the clients made
// before the call as well.
func (p *Pool) SetLog(l *maillog.Logger) {
	p.mu.Lock()
	p.log = l
	p.mu.Unlock()
}

// Client returns the Pool's client for s, creating it on first use.
// After Close, the returned client fails every query (returning
// s.DefaultAction).
func (p *Pool) Client(s Settings) *Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[s]; ok {
		return c
	}
	c := &Client{s: s, pool: p, closed: p.closed}
	if !p.closed {
		p.clients[s] = c
	}
	return c
}

// Close closes every client's connections; queries after Close fail
// over to their default action.
func (p *Pool) Close() error {
	p.mu.Lock()
	clients := p.clients
	p.clients = make(map[Settings]*Client)
	p.closed = true
	p.mu.Unlock()
	for _, c := range clients {
		c.close()
	}
	return nil
}

// Client talks to one policy server with one Settings. It is safe for
// concurrent use: each query takes an idle connection or dials a new one.
type Client struct {
	s    Settings
	pool *Pool // for its logger

	mu     sync.Mutex
	idle   []*conn
	closed bool

	// dials counts connections opened, for tests of reuse.
	dials int
}

// conn is one connection with the facts max_ttl, max_idle and
// request_limit decide on.
type conn struct {
	nc       net.Conn
	br       *bufio.Reader
	opened   time.Time
	requests int
	idleTmr  *time.Timer
}

// Settings returns the client's settings.
func (c *Client) Settings() Settings { return c.s }

// Query sends r and returns the server's action, an access(5) action for
// the caller to evaluate. A failed attempt (connect, write, read, timeout,
// a reply without action or too long) is retried after RetryDelay up to
// TryLimit attempts in all; after the last one Query logs Postfix's
// "warning: problem talking to server NAME: ERROR" and returns
// DefaultAction with a nil error, as smtpd does (SMTPD_POLICY_README,
// smtpd_policy_service_default_action). err is non-nil only when ctx ends
// first: the session is going away and no action applies.
func (c *Client) Query(ctx context.Context, r *Request) (action string, err error) {
	req := r.encode(&c.s)
	var last error
	for try := 1; try <= c.s.TryLimit; try++ {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("policy %s: %w", c.s.Endpoint, err)
		}
		action, err := c.attempt(ctx, req)
		if err == nil {
			return action, nil
		}
		last = err
		if ctx.Err() != nil {
			return "", fmt.Errorf("policy %s: %w", c.s.Endpoint, ctx.Err())
		}
		if try < c.s.TryLimit {
			t := time.NewTimer(c.s.RetryDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return "", fmt.Errorf("policy %s: %w", c.s.Endpoint, ctx.Err())
			case <-t.C:
			}
		}
	}
	c.pool.mu.Lock()
	log := c.pool.log
	c.pool.mu.Unlock()
	if log != nil {
		log.Warning("problem talking to server %s: %v", c.s.serverName(), last)
	}
	return c.s.DefaultAction, nil
}

// attempt sends one request on one connection and reads the reply. The
// connection goes back to the idle list only after a complete exchange
// that leaves it within request_limit and max_ttl.
func (c *Client) attempt(ctx context.Context, req []byte) (string, error) {
	cn, err := c.get(ctx)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(c.s.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	stop := context.AfterFunc(ctx, func() { cn.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := cn.nc.SetDeadline(deadline); err != nil {
		cn.nc.Close()
		return "", err
	}
	if _, err := cn.nc.Write(req); err != nil {
		cn.nc.Close()
		return "", timeoutText(err)
	}
	action, err := readReply(cn.br)
	if err != nil {
		cn.nc.Close()
		return "", timeoutText(err)
	}
	cn.requests++
	if !stop() {
		// ctx ended as the reply arrived: the deadline was
		// clobbered, so the connection is not reused.
		cn.nc.Close()
		return action, nil
	}
	c.put(cn)
	return action, nil
}

// timeoutText words an error as Postfix's "%m" does in "problem talking to
// server": glibc's strerror text for a system error ("Connection
// refused"; Go's errno strings are the same texts in lower case) and
// "Connection timed out" for a deadline (Postfix's stream timeout sets
// ETIMEDOUT), rather than Go's text with addresses.
func timeoutText(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New(strerror(syscall.ETIMEDOUT))
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errors.New(strerror(errno))
	}
	return err
}

// strerror is glibc's text for errno.
func strerror(errno syscall.Errno) string {
	s := errno.Error()
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// get takes a usable idle connection or dials a new one.
func (c *Client) get(ctx context.Context) (*conn, error) {
	now := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("policy client closed")
	}
	for len(c.idle) > 0 {
		cn := c.idle[len(c.idle)-1]
		c.idle = c.idle[:len(c.idle)-1]
		if !cn.idleTmr.Stop() || now.Sub(cn.opened) >= c.s.MaxTTL {
			// The idle timer fired (it closes the connection) or
			// the connection outlived max_ttl.
			cn.nc.Close()
			continue
		}
		c.mu.Unlock()
		if !cn.alive() {
			cn.nc.Close()
			c.mu.Lock()
			continue
		}
		return cn, nil
	}
	c.dials++
	c.mu.Unlock()
	network, address, err := c.s.dialTarget()
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: c.s.Timeout}
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			return nil, timeoutText(oe.Err)
		}
		return nil, timeoutText(err)
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 1024), opened: time.Now()}, nil
}

// alive reports whether an idle connection is still open and silent.
// Postfix's auto_clnt watches its idle stream and drops it when the server
// hangs up; moat looks when it takes the connection, so a server that
// closed idle connections (a restart, its own idle timeout) costs neither
// an attempt nor smtpd_policy_service_retry_delay.
func (cn *conn) alive() bool {
	if cn.br.Buffered() > 0 {
		return false // the server sent bytes nobody asked for
	}
	sc, ok := cn.nc.(syscall.Conn)
	if !ok {
		return true // the attempt and its retry find out
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	healthy := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		// A non-blocking peek: EAGAIN means open and silent, 0 bytes
		// means the server hung up, anything else ends it too.
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		healthy = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && healthy
}

// put returns a connection to the idle list, or closes it when it reached
// request_limit or max_ttl, the client is closed, or the list is full.
func (c *Client) put(cn *conn) {
	if (c.s.RequestLimit > 0 && cn.requests >= c.s.RequestLimit) ||
		time.Since(cn.opened) >= c.s.MaxTTL {
		cn.nc.Close()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || len(c.idle) >= maxIdleConns {
		cn.nc.Close()
		return
	}
	cn.idleTmr = time.AfterFunc(c.s.MaxIdle, func() { c.expire(cn) })
	c.idle = append(c.idle, cn)
}

// expire closes a connection that stayed idle for max_idle.
func (c *Client) expire(cn *conn) {
	c.mu.Lock()
	for i, x := range c.idle {
		if x == cn {
			c.idle = append(c.idle[:i], c.idle[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	cn.nc.Close()
}

// close closes the idle connections and fails later queries.
func (c *Client) close() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.closed = true
	c.mu.Unlock()
	for _, cn := range idle {
		cn.idleTmr.Stop()
		cn.nc.Close()
	}
}
