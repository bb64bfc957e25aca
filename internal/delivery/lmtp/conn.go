package lmtp

import (
	"bufio"
	"net"
	"sync"
	"time"

	"moat/internal/smtp"
)

// wire is one connection to an LMTP server with what the handshake
// learned, owned by one session at a time or idle in the cache.
type wire struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// wtimeout bounds each write, as Postfix's per-I/O timeouts do; the
	// phase sets it.
	wtimeout time.Duration

	namaddr, relay string
	ext            smtp.Extensions
	born           time.Time // for lmtp_connection_reuse_time_limit
	uses           int       // for lmtp_connection_reuse_count_limit
}

func newWire(c net.Conn) *wire {
	w := &wire{c: c, br: bufio.NewReaderSize(c, 4096)}
	w.bw = bufio.NewWriterSize(deadlineWriter{w}, 32*1024)
	return w
}

// deadlineWriter renews the write deadline before each write to the
// connection.
type deadlineWriter struct{ w *wire }

func (d deadlineWriter) Write(p []byte) (int, error) {
	setDeadline(d.w.c.SetWriteDeadline, d.w.wtimeout)
	return d.w.c.Write(p)
}

func setDeadline(set func(time.Time) error, d time.Duration) {
	if d > 0 {
		set(time.Now().Add(d))
	} else {
		set(time.Time{})
	}
}

// read reads one reply within timeout.
func (w *wire) read(timeout time.Duration) (smtp.Reply, error) {
	setDeadline(w.c.SetReadDeadline, timeout)
	return smtp.ReadReply(w.br, 0)
}

// send queues one command line; flush sends what is queued.
func (w *wire) send(line string, timeout time.Duration) {
	w.wtimeout = timeout
	w.bw.WriteString(line)
	w.bw.WriteString("\r\n")
}

func (w *wire) flush(timeout time.Duration) error {
	w.wtimeout = timeout
	return w.bw.Flush()
}

// quitAndClose ends an idle connection: QUIT, its reply awaited for at
// most timeout, then close.
func (w *wire) quitAndClose(timeout time.Duration) {
	w.send("QUIT", timeout)
	if w.flush(timeout) == nil {
		w.read(timeout)
	}
	w.c.Close()
}

// connCache keeps connections idle between deliveries to the same next
// hop, as Postfix's lmtp(8) does with its scache(8) (postconf(5)
// lmtp_connection_cache_on_demand, lmtp_connection_cache_time_limit,
// lmtp_connection_reuse_time_limit, lmtp_connection_reuse_count_limit):
// a burst of mail for Dovecot then costs one connect, greeting and LHLO
// per connection instead of per message. A connection idles at most
// idle, lives at most life, and serves at most uses transactions (0: no
// limit); an idle one past its time is ended by a timer.
type connCache struct {
	enabled func(key string) bool
	idle    time.Duration
	life    time.Duration
	uses    int
	quit    time.Duration

	mu     sync.Mutex
	conns  map[string][]*idleWire
	closed bool
}

type idleWire struct {
	w     *wire
	since time.Time
	timer *time.Timer
}

// get takes the most recently used idle connection for key that is
// still within its limits; nil when there is none.
func (c *connCache) get(key string, now time.Time) *wire {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	list := c.conns[key]
	for len(list) > 0 {
		iw := list[len(list)-1]
		list = list[:len(list)-1]
		if !iw.timer.Stop() {
			// The timer fired and is ending it.
			continue
		}
		if now.Sub(iw.since) >= c.idle || !c.reusable(iw.w, now) {
			go iw.w.quitAndClose(c.quit)
			continue
		}
		c.conns[key] = list
		return iw.w
	}
	delete(c.conns, key)
	return nil
}

// reusable applies the reuse limits.
func (c *connCache) reusable(w *wire, now time.Time) bool {
	if c.uses > 0 && w.uses >= c.uses {
		return false
	}
	return c.life <= 0 || now.Sub(w.born) < c.life
}

// put makes w idle under key, and reports false (leaving w to the
// caller) when caching is off for key or w has reached its limits.
func (c *connCache) put(key string, w *wire, now time.Time) bool {
	if c == nil || !c.enabled(key) || !c.reusable(w, now) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	iw := &idleWire{w: w, since: now}
	iw.timer = time.AfterFunc(c.idle, func() {
		c.mu.Lock()
		list := c.conns[key]
		for i, x := range list {
			if x == iw {
				c.conns[key] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		w.quitAndClose(c.quit)
	})
	if c.conns == nil {
		c.conns = make(map[string][]*idleWire)
	}
	c.conns[key] = append(c.conns[key], iw)
	return true
}

// close ends every idle connection; later puts are refused.
func (c *connCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	var ending []*wire
	for _, list := range c.conns {
		for _, iw := range list {
			if iw.timer.Stop() {
				ending = append(ending, iw.w)
			}
		}
	}
	c.conns = nil
	c.closed = true
	c.mu.Unlock()
	for _, w := range ending {
		w.quitAndClose(c.quit)
	}
}
