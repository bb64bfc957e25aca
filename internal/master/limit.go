package master

import (
	"sync"
	"time"
)

// limiter bounds a service's concurrent sessions: master.cf's maxproc
// column (master(5): "the maximum number of processes that may execute
// this service simultaneously"; 0 means no limit). It belongs to the
// service's name and type, not to one configuration generation, so a
// reload that keeps the service keeps counting the sessions still running
// on the old generation, and a lowered maxproc takes effect as they end.
type limiter struct {
	mu      sync.Mutex
	n, max  int
	changed chan struct{} // closed and replaced whenever n or max changes
	// warned is when the process-limit warning was last logged: master(8)
	// repeats it at most every 1000 seconds per service.
	warned time.Time
}

func newLimiter(max int) *limiter {
	return &limiter{max: max, changed: make(chan struct{})}
}

// tryAcquire takes a slot when one is free. Otherwise it returns false and
// a channel closed at the next change (a session ended, maxproc changed),
// after which the caller tries again.
func (l *limiter) tryAcquire() (bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max == 0 || l.n < l.max {
		l.n++
		return true, nil
	}
	return false, l.changed
}

func (l *limiter) release() {
	l.mu.Lock()
	l.n--
	l.broadcastLocked()
	l.mu.Unlock()
}

// setMax applies a reloaded maxproc.
func (l *limiter) setMax(max int) {
	l.mu.Lock()
	l.max = max
	l.broadcastLocked()
	l.mu.Unlock()
}

// wake releases waiters so they look again (their listener may have moved
// to another service).
func (l *limiter) wake() {
	l.mu.Lock()
	l.broadcastLocked()
	l.mu.Unlock()
}

func (l *limiter) broadcastLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// shouldWarn reports whether the process-limit warning is due, and if so
// records that it is being logged now.
func (l *limiter) shouldWarn(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.warned.IsZero() && now.Sub(l.warned) < 1000*time.Second {
		return false
	}
	l.warned = now
	return true
}

// load returns the sessions running and the limit.
func (l *limiter) load() (n, max int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.max
}
