package anvil

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Client times, chosen so that a dead or wedged anvil costs a session at
// most a few seconds once, and then nothing until the retry delay passes.
const (
	dialTimeout    = time.Second
	requestTimeout = 2 * time.Second
	retryDelay     = time.Second
)

// Client talks to the anvil service over its UNIX socket. It is safe for
// concurrent use by every session of an smtpd process: requests take turns
// on one connection (each is one short line each way). When the service
// restarts, the next request reconnects; while it stays unreachable,
// requests fail fast with an error and smtpd goes on without limits, as
// Postfix's smtpd does.
type Client struct {
	path string

	mu      sync.Mutex
	conn    net.Conn
	br      *bufio.Reader
	downAt  time.Time // last failed dial: no new dial before retryDelay
	lastErr error
}

// Dial connects to the anvil service at path (private/anvil under the queue
// directory) and reports a failure at once, for a caller that wants to know.
func Dial(path string) (*Client, error) {
	c := NewClient(path)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.connect(); err != nil {
		return nil, err
	}
	return c, nil
}

// NewClient returns a client that connects on its first request, for an
// smtpd that may start before the anvil service does.
func NewClient(path string) *Client { return &Client{path: path} }

// Close drops the connection; the client may still be used (it reconnects).
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drop()
}

func (c *Client) drop() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn, c.br = nil, nil
	return err
}

// connect dials unless a dial failed within retryDelay. Called with mu held.
func (c *Client) connect() error {
	if c.conn != nil {
		return nil
	}
	if !c.downAt.IsZero() && time.Since(c.downAt) < retryDelay {
		return fmt.Errorf("anvil %s unreachable: %w", c.path, c.lastErr)
	}
	conn, err := net.DialTimeout("unix", c.path, dialTimeout)
	if err != nil {
		c.downAt, c.lastErr = time.Now(), err
		return fmt.Errorf("anvil: %w", err)
	}
	c.downAt, c.lastErr = time.Time{}, nil
	c.conn, c.br = conn, bufio.NewReaderSize(conn, MaxLine)
	return nil
}

// do sends one request and reads its reply, reconnecting once when the
// connection it had turns out to be dead (the service restarted).
func (c *Client) do(verb, service, addr string) (Reply, error) {
	req := Request{Verb: verb, Service: service, Addr: addr}
	for _, f := range []string{service, addr} {
		if err := checkField(f); err != nil {
			return Reply{}, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for attempt := 0; ; attempt++ {
		fresh := c.conn == nil
		if err := c.connect(); err != nil {
			return Reply{}, err
		}
		rep, err := c.roundTrip(req)
		if err == nil {
			if rep.Err != "" {
				return Reply{}, fmt.Errorf("anvil: %s: %s", verb, rep.Err)
			}
			return rep, nil
		}
		_ = c.drop()
		if fresh || attempt > 0 {
			c.downAt, c.lastErr = time.Now(), err
			return Reply{}, fmt.Errorf("anvil %s: %w", c.path, err)
		}
	}
}

func (c *Client) roundTrip(req Request) (Reply, error) {
	if err := c.conn.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
		return Reply{}, err
	}
	if _, err := c.conn.Write([]byte(req.String() + "\n")); err != nil {
		return Reply{}, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			err = errors.New("reply line too long")
		}
		return Reply{}, err
	}
	return ParseReply(strings.TrimSuffix(string(line), "\n"))
}

// Connect implements Limiter.
func (c *Client) Connect(service, addr string) (int, int, error) {
	r, err := c.do("CONNECT", service, addr)
	return r.Count, r.Rate, err
}

// Disconnect implements Limiter.
func (c *Client) Disconnect(service, addr string) error {
	_, err := c.do(verbDisconnect, service, addr)
	return err
}

// Mail implements Limiter.
func (c *Client) Mail(service, addr string) (int, error) {
	r, err := c.do("MAIL", service, addr)
	return r.Rate, err
}

// Rcpt implements Limiter.
func (c *Client) Rcpt(service, addr string) (int, error) {
	r, err := c.do("RCPT", service, addr)
	return r.Rate, err
}

// NewTLS implements Limiter.
func (c *Client) NewTLS(service, addr string) (int, error) {
	r, err := c.do("NEWTLS", service, addr)
	return r.Rate, err
}

// NewTLSStatus implements Limiter.
func (c *Client) NewTLSStatus(service, addr string) (int, error) {
	r, err := c.do(verbTLSStatus, service, addr)
	return r.Rate, err
}

// Auth implements Limiter.
func (c *Client) Auth(service, addr string) (int, error) {
	r, err := c.do("AUTH", service, addr)
	return r.Rate, err
}
