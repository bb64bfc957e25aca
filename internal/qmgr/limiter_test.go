package qmgr

import (
	"context"
	"sync"
	"testing"
	"time"
)

// acquired reports whether acquire(d) returns within a short wait.
func acquired(l *limiter, d string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		if sus(l.acquire(context.Background(), d, nil)) != nil {
			panic("suspended")
		}
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

// sus drops acquire's parked result for the tests that never park.
func sus(s *suspension, _ bool) *suspension { return s }

// fixed is a destination concurrency of n from the start (no slow start).
func fixed(n int) schedParams {
	return schedParams{limit: n, init: n, pos: feedback{coef: 1}, neg: feedback{coef: 1}, cohorts: 1}
}

var ok = outcome{feedback: true}

// TestLimiterHandsSlotsInOrder: a freed slot goes to the oldest waiter it
// fits; a request for another destination is not held behind a busy one.
func TestLimiterHandsSlotsInOrder(t *testing.T) {
	l := newLimiter(3, fixed(2))
	sus(l.acquire(context.Background(), "a", nil))
	sus(l.acquire(context.Background(), "a", nil))
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
	l.release("a", ok)
	if !isDone(a3, 5*time.Second) {
		t.Fatal("the oldest waiter did not get the freed slot")
	}
	if isDone(c, 50*time.Millisecond) {
		t.Fatal("one release gave out two slots")
	}
	l.release("b", ok)
	if !isDone(c, 5*time.Second) {
		t.Fatal("the next waiter did not get the slot")
	}
}

// TestLimiterBoundsUnderLoad: many requests at once never exceed either
// limit and all finish.
func TestLimiterBoundsUnderLoad(t *testing.T) {
	const procs, dest = 4, 2
	l := newLimiter(procs, fixed(dest))
	var mu sync.Mutex
	busy, per := 0, map[string]int{}
	var wg sync.WaitGroup
	for i := range 200 {
		d := string(rune('a' + i%5))
		wg.Go(func() {
			if sus(l.acquire(context.Background(), d, nil)) != nil {
				t.Error("suspended without a failure")
				return
			}
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
			l.release(d, ok)
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

// TestLimiterSlowStart: a destination starts at the initial concurrency
// and each success while the window is in use adds one, up to the limit
// (qmgr(8) STRATEGIES, default feedback 1).
func TestLimiterSlowStart(t *testing.T) {
	p := schedParams{limit: 8, init: 2, pos: feedback{coef: 1}, neg: feedback{coef: 1}, cohorts: 1}
	l := newLimiter(64, p)
	sus(l.acquire(context.Background(), "d", nil))
	sus(l.acquire(context.Background(), "d", nil))
	third := acquired(l, "d")
	if isDone(third, 50*time.Millisecond) {
		t.Fatal("a third delivery at an initial concurrency of 2")
	}
	l.release("d", ok) // window 3: the waiter gets its slot
	if !isDone(third, 5*time.Second) {
		t.Fatal("the window did not grow after a success")
	}
	// Keep the destination's window full: it grows to the limit, never
	// past it. Two slots are held from above.
	held := 2
	for range 10 {
		w := l.window("d")
		if w > p.limit {
			t.Fatalf("window %d over the limit %d", w, p.limit)
		}
		for ; held < w; held++ {
			sus(l.acquire(context.Background(), "d", nil))
		}
		l.release("d", ok)
		held--
	}
	if w := l.window("d"); w != p.limit {
		t.Errorf("window %d after 10 rounds, want the limit %d", w, p.limit)
	}
	// A site failure lowers it.
	l.release("d", outcome{feedback: true, site: true, dsn: "4.4.2", reason: "lost connection"})
	if w := l.window("d"); w >= p.limit {
		t.Errorf("window %d after a site failure", w)
	}
}

// TestLimiterDeadDestination: site failures at concurrency 1 up to the
// failed-cohort limit declare the destination dead: a waiter for it and
// any later request get the suspension with the last failure's text,
// another destination is not affected, and reviveAll (postqueue -f)
// ends it.
func TestLimiterDeadDestination(t *testing.T) {
	p := schedParams{limit: 1, init: 1, pos: feedback{coef: 1}, neg: feedback{coef: 1}, cohorts: 2, deadFor: time.Hour}
	l := newLimiter(64, p)
	site := outcome{feedback: true, site: true, dsn: "4.4.1", reason: "connect to x: Connection refused"}
	sus(l.acquire(context.Background(), "dead", nil))
	l.release("dead", site)
	if s := sus(l.acquire(context.Background(), "dead", nil)); s != nil {
		t.Fatalf("dead after one failed cohort of two: %+v", s)
	}
	waiter := make(chan *suspension, 1)
	go func() { waiter <- sus(l.acquire(context.Background(), "dead", nil)) }()
	time.Sleep(20 * time.Millisecond)
	l.release("dead", site)
	select {
	case s := <-waiter:
		if s == nil || s.reason != site.reason || s.dsn != "4.4.1" {
			t.Fatalf("waiter got %+v", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiter for a dead destination was not released")
	}
	if s := sus(l.acquire(context.Background(), "dead", nil)); s == nil {
		t.Fatal("a dead destination was tried")
	}
	if s := sus(l.acquire(context.Background(), "live", nil)); s != nil {
		t.Fatalf("another destination suspended: %+v", s)
	}
	l.release("live", ok)
	l.reviveAll()
	if s := sus(l.acquire(context.Background(), "dead", nil)); s != nil {
		t.Fatalf("still dead after reviveAll: %+v", s)
	}
	l.release("dead", ok)
}

// TestLimiterSuccessClearsCohorts: a success between failures restarts
// the failed-cohort count, so a destination that works now and then is
// never declared dead.
func TestLimiterSuccessClearsCohorts(t *testing.T) {
	p := schedParams{limit: 1, init: 1, pos: feedback{coef: 1}, neg: feedback{coef: 1}, cohorts: 2, deadFor: time.Hour}
	l := newLimiter(64, p)
	site := outcome{feedback: true, site: true, dsn: "4.4.1", reason: "refused"}
	for range 10 {
		for _, o := range []outcome{site, ok} {
			if s := sus(l.acquire(context.Background(), "d", nil)); s != nil {
				t.Fatalf("suspended: %+v", s)
			}
			l.release("d", o)
		}
	}
}

// TestLimiterRateDelay: with a destination rate delay the destination
// has one delivery at a time and the next starts only after the delay;
// other destinations are not held (counts, not timing).
func TestLimiterRateDelay(t *testing.T) {
	p := fixed(5)
	p.destDelay = time.Hour
	l := newLimiter(64, p)
	sus(l.acquire(context.Background(), "d", nil))
	l.release("d", ok)
	next := acquired(l, "d")
	if isDone(next, 100*time.Millisecond) {
		t.Fatal("a second delivery to a rate-delayed destination started at once")
	}
	other := acquired(l, "e")
	if !isDone(other, 5*time.Second) {
		t.Fatal("another destination waited for the rate delay")
	}
}

func TestParseFeedback(t *testing.T) {
	for _, c := range []struct {
		in     string
		window int
		want   float64
	}{{"1", 4, 1}, {"1/concurrency", 4, 0.25}, {"0.5", 3, 0.5}, {"1/4", 9, 0.25}, {" 1 / concurrency ", 2, 0.5}} {
		f, err := parseFeedback(c.in)
		if err != nil || f.value(c.window) != c.want {
			t.Errorf("%q at %d: %v, %v; want %v", c.in, c.window, f.value(c.window), err, c.want)
		}
	}
	for _, bad := range []string{"", "x", "2", "-1", "1/0", "1/conc", "1/0.5"} {
		if _, err := parseFeedback(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseFeedback: any text is an error or a feedback amount between 0
// and 1 at every concurrency, so the window arithmetic cannot run away.
func FuzzParseFeedback(f *testing.F) {
	for _, s := range []string{"1", "1/concurrency", "0.5", "1/4", " 1 / concurrency ", "", "2", "1/0", "NaN", "1e-300/1e300", "Inf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fb, err := parseFeedback(s)
		if err != nil {
			return
		}
		for _, w := range []int{0, 1, 5, 1000} {
			if v := fb.value(w); !(v >= 0 && v <= 1) {
				t.Fatalf("%q at %d: %v", s, w, v)
			}
		}
	})
}
