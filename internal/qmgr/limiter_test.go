package qmgr

import (
	"sync"
	"testing"
	"time"
)

// acquired reports whether acquire(d) returns within a short wait.
func acquired(l *limiter, d string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		l.acquire(d)
		close(done)
	}()
	return done
}

func isDone(c <-chan struct{}, wait time.Duration) bool {
	select {
	case <-c:
		return true
	case <-time.After(wait):
		return false
	}
}

// TestLimiterHandsSlotsInOrder: a freed slot goes to the oldest waiter it
// fits; a request for another destination is not held behind a busy one.
func TestLimiterHandsSlotsInOrder(t *testing.T) {
	l := newLimiter(3, 2)
	l.acquire("a")
	l.acquire("a")
	a3 := acquired(l, "a")
	if isDone(a3, 50*time.Millisecond) {
		t.Fatal("a third slot for a destination limited to two")
	}
	if b := acquired(l, "b"); !isDone(b, 5*time.Second) {
		t.Fatal("another destination waited behind a busy one")
	}
	c := acquired(l, "c") // the process limit (3) is reached
	if isDone(c, 50*time.Millisecond) {
		t.Fatal("a fourth slot with a process limit of three")
	}
	l.release("a")
	if !isDone(a3, 5*time.Second) {
		t.Fatal("the oldest waiter did not get the freed slot")
	}
	if isDone(c, 50*time.Millisecond) {
		t.Fatal("one release gave out two slots")
	}
	l.release("b")
	if !isDone(c, 5*time.Second) {
		t.Fatal("the next waiter did not get the slot")
	}
}

// TestLimiterBoundsUnderLoad: many requests at once never exceed either
// limit and all finish.
func TestLimiterBoundsUnderLoad(t *testing.T) {
	const procs, dest = 4, 2
	l := newLimiter(procs, dest)
	var mu sync.Mutex
	busy, per := 0, map[string]int{}
	var wg sync.WaitGroup
	for i := range 200 {
		d := string(rune('a' + i%5))
		wg.Go(func() {
			l.acquire(d)
			mu.Lock()
			busy++
			per[d]++
			if busy > procs || per[d] > dest {
				t.Errorf("%d in progress, %d for %s", busy, per[d], d)
			}
			mu.Unlock()
			time.Sleep(100 * time.Microsecond)
			mu.Lock()
			busy--
			per[d]--
			mu.Unlock()
			l.release(d)
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	if !isDone(done, 30*time.Second) {
		t.Fatal("requests still waiting after 30 s")
	}
}
