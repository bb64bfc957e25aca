package smtp

import (
	"sync"
	"time"
)

// deadHops remembers next hops where no server could be reached, as
// Postfix's queue manager throttles a destination after a delivery agent
// reports a site failure (qmgr_queue_throttle): until minimal_backoff_time
// has passed, more mail for it is deferred at once with "delivery
// temporarily suspended: REASON" instead of waiting for the same connect
// timeouts again, so a dead destination does not hold the transport's
// delivery slots that mail for live ones needs. Then one request tries
// again, and its outcome marks or clears the hop.
type deadHops struct {
	ttl time.Duration

	mu sync.Mutex
	m  map[string]deadHop
}

type deadHop struct {
	until       time.Time
	dsn, reason string
}

// maxDeadHops bounds the table; expired entries are dropped when it is
// full.
const maxDeadHops = 10000

// check reports whether key is suspended, with the failure that did it.
func (d *deadHops) check(key string, now time.Time) (deadHop, bool) {
	if d == nil || d.ttl <= 0 {
		return deadHop{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	h, ok := d.m[key]
	if !ok {
		return deadHop{}, false
	}
	if !now.Before(h.until) {
		// This request is the probe; a new failure marks it again.
		delete(d.m, key)
		return deadHop{}, false
	}
	return h, true
}

// mark suspends key after a site failure.
func (d *deadHops) mark(key string, now time.Time, dsn, reason string) {
	if d == nil || d.ttl <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = make(map[string]deadHop)
	}
	if len(d.m) >= maxDeadHops {
		for k, h := range d.m {
			if !now.Before(h.until) {
				delete(d.m, k)
			}
		}
		if len(d.m) >= maxDeadHops {
			return
		}
	}
	d.m[key] = deadHop{until: now.Add(d.ttl), dsn: dsn, reason: reason}
}

// clear ends a suspension once a server of key answered.
func (d *deadHops) clear(key string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	delete(d.m, key)
	d.mu.Unlock()
}
