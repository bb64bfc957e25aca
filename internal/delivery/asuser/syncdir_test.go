package asuser

import (
	"bufio"
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

// TestSyncBatchesShareOneRound: callers that join within syncGather share
// one fsync request; a caller after the round was asked for gets a new
// one, which begins after its call.
func TestSyncBatchesShareOneRound(t *testing.T) {
	var b syncBatches
	var calls atomic.Int32
	release := make(chan struct{})
	do := func() error {
		calls.Add(1)
		<-release
		return nil
	}
	first := b.join("k", do)
	var rounds []*syncRound
	for range 10 {
		rounds = append(rounds, b.join("k", do))
	}
	for _, rd := range rounds {
		if rd != first {
			t.Fatal("a caller within the gather window got its own round")
		}
	}
	other := b.join("other", do)
	if other == first {
		t.Fatal("two directories share a round")
	}
	// Once the round's fsync is asked for, a new caller needs the next.
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d fsync requests for two directories, want 2", calls.Load())
	}
	late := b.join("k", do)
	if late == first {
		t.Fatal("a caller joined a round whose fsync had already begun")
	}
	close(release)
	for _, rd := range []*syncRound{first, other, late} {
		<-rd.done
		if rd.err != nil {
			t.Error(rd.err)
		}
	}
	if calls.Load() != 3 {
		t.Errorf("%d fsync requests, want 3", calls.Load())
	}
	b.mu.Lock()
	left := len(b.rounds)
	b.mu.Unlock()
	if left != 0 {
		t.Errorf("%d rounds left in the table", left)
	}
}

// TestRunnerSyncDirOverSocket: deliveries with DeferSync through a real
// executor, then SyncDir from many callers at once for their new/; a
// directory that is not a new/ is refused before anything is sent, a
// missing one defers (4.3.0), and a caller whose context ends is not
// held.
func TestRunnerSyncDirOverSocket(t *testing.T) {
	cr := account(t)
	sock, _ := executor(t)
	r := NewRunner(moatBin, sock)
	defer r.Close()
	if !r.DefersSync() {
		t.Fatal("a Runner with an executor does not defer new/ fsyncs")
	}
	md := filepath.Join(userDir(t, cr), "Maildir")
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			job := Job{Kind: KindMaildir, Path: md + "/", Maildir: maildir.Options{
				Key: "s" + string(rune('a'+i)), Arrival: time.Unix(1700000000, 0), DeferSync: true}}
			if err := r.Deliver(context.Background(), cr, job, strings.NewReader(testMsg)); err != nil {
				t.Error(err)
				return
			}
			if err := r.SyncDir(context.Background(), cr, filepath.Join(md, "new")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if c, err := maildir.Count(md + "/"); err != nil || c != n {
		t.Errorf("%d messages (%v), want %d", c, err, n)
	}

	for _, bad := range []string{md, md + "/new/", "new", md + "/../x/new", md + "/cur"} {
		if err := r.SyncDir(context.Background(), cr, bad); err == nil {
			t.Errorf("SyncDir(%q) accepted", bad)
		}
	}
	err := r.SyncDir(context.Background(), cr, filepath.Join(md, "gone", "new"))
	wantDeliveryError(t, err, "4.3.0", "cannot sync maildir directory")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.SyncDir(ctx, cr, filepath.Join(md, "new")); !errors.Is(err, context.Canceled) {
		t.Errorf("SyncDir with an ended context: %v", err)
	}
}

// TestServeRefusesBadSync: the executor itself checks a sync request's
// directory, and refuses one with root's credentials.
func TestServeRefusesBadSync(t *testing.T) {
	cr := account(t)
	sock, _ := executor(t)
	for _, req := range []request{
		{Op: opSync, Creds: cr, Sync: &wireSync{Dir: "/etc"}},
		{Op: opSync, Creds: cr, Sync: &wireSync{Dir: "relative/new"}},
		{Op: opSync, Creds: cr},
		{Op: opSync, Creds: Creds{}, Sync: &wireSync{Dir: "/root/Maildir/new"}},
	} {
		c := rawRequest(t, sock, req)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.Contains(string(b), `"Error"`) {
			t.Errorf("%+v: answer %q, want a refusal", req, b)
		}
	}
}
