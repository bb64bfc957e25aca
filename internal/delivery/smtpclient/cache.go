package smtpclient

import (
	"sync"
	"time"
)

// Cache keeps connections idle between deliveries to the same next hop,
// as Postfix's smtp(8) and lmtp(8) do with scache(8) (postconf(5)
// smtp_connection_cache_on_demand, smtp_connection_cache_destinations,
// smtp_connection_cache_time_limit, smtp_connection_reuse_time_limit,
// and the lmtp_ equivalents): a burst of mail for one destination then
// costs one connect, greeting and EHLO per connection instead of per
// message. A connection idles at most Idle, lives at most Life, and
// serves at most Uses transactions (0: no limit); an idle one past its
// time is ended by a timer. A nil *Cache caches nothing.
type Cache struct {
	// Enabled says whether connections to a destination key are kept.
	Enabled func(key string) bool
	Idle    time.Duration
	Life    time.Duration
	Uses    int
	// Quit bounds the QUIT that ends an expired connection.
	Quit time.Duration

	mu     sync.Mutex
	conns  map[string][]*idleConn
	closed bool
}

type idleConn struct {
	w     *Conn
	since time.Time
	timer *time.Timer
}

// Get takes the most recently used idle connection for key that is
// still within its limits; nil when there is none.
func (c *Cache) Get(key string, now time.Time) *Conn {
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
		if now.Sub(iw.since) >= c.Idle || !c.reusable(iw.w, now) {
			go iw.w.QuitAndClose(c.Quit)
			continue
		}
		c.conns[key] = list
		return iw.w
	}
	delete(c.conns, key)
	return nil
}

// reusable applies the reuse limits.
func (c *Cache) reusable(w *Conn, now time.Time) bool {
	if c.Uses > 0 && w.Uses >= c.Uses {
		return false
	}
	return c.Life <= 0 || now.Sub(w.Born) < c.Life
}

// Put makes w idle under key, and reports false (leaving w to the
// caller) when caching is off for key or w has reached its limits.
func (c *Cache) Put(key string, w *Conn, now time.Time) bool {
	if c == nil || !c.Enabled(key) || !c.reusable(w, now) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	iw := &idleConn{w: w, since: now}
	iw.timer = time.AfterFunc(c.Idle, func() {
		c.mu.Lock()
		list := c.conns[key]
		for i, x := range list {
			if x == iw {
				c.conns[key] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		w.QuitAndClose(c.Quit)
	})
	if c.conns == nil {
		c.conns = make(map[string][]*idleConn)
	}
	c.conns[key] = append(c.conns[key], iw)
	return true
}

// Close ends every idle connection; later Puts are refused.
func (c *Cache) Close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	var ending []*Conn
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
		w.QuitAndClose(c.Quit)
	}
}
