package asuser

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moat/internal/delivery/maildir"
)

// TestGroupSyncCoversEveryCaller: concurrent callers share fsyncs, and
// each returns only after an fsync that began after it called.
func TestGroupSyncCoversEveryCaller(t *testing.T) {
	g := &groupSync{}
	g.cond = sync.NewCond(&g.mu)
	var clock, calls, lastStart atomic.Int64
	do := func() error {
		start := clock.Add(1)
		calls.Add(1)
		time.Sleep(2 * time.Millisecond) // an fsync's time, for others to arrive
		// Generations end in order: the latest begun is the one ending.
		lastStart.Store(start)
		return nil
	}
	const callers = 40
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			entered := clock.Add(1)
			if err := g.sync(do); err != nil {
				t.Error(err)
			}
			if s := lastStart.Load(); s <= entered {
				t.Errorf("returned after an fsync begun at %d, before the call at %d", s, entered)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n < 1 || n > callers {
		t.Errorf("%d fsyncs for %d callers", n, callers)
	}
	t.Logf("%d fsyncs for %d callers", calls.Load(), callers)
}

// TestGroupSyncFailure: a failed fsync fails the callers it was to cover.
func TestGroupSyncFailure(t *testing.T) {
	g := &groupSync{}
	g.cond = sync.NewCond(&g.mu)
	boom := errors.New("EIO")
	if err := g.sync(func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("failed fsync: %v", err)
	}
	if err := g.sync(func() error { return nil }); err != nil {
		t.Errorf("a later good fsync: %v", err)
	}
}

// TestExecutorConcurrentMaildir: deliveries at once into one Maildir
// through the executor's shared new/ fsyncs all arrive, and the table of
// group commits is empty afterwards.
func TestExecutorConcurrentMaildir(t *testing.T) {
	cr := account(t)
	dir := userDir(t, cr)
	md := filepath.Join(dir, "Maildir") + "/"
	p := newThreadPool()
	defer p.close()
	const n = 12
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			job := Job{Kind: KindMaildir, Path: md, Maildir: maildir.Options{Key: "k" + string(rune('a'+i)), Arrival: time.Unix(1700000000, 0)}}
			if _, err := deliverOnThread(context.Background(), p, cr, job, strings.NewReader(testMsg)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if c, err := maildir.Count(md); err != nil || c != n {
		t.Errorf("%d messages (%v), want %d", c, err, n)
	}
	p.mu.Lock()
	left := len(p.syncs)
	p.mu.Unlock()
	if left != 0 {
		t.Errorf("%d group commits left in the table", left)
	}
}
