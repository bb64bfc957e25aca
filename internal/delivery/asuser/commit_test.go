package asuser

import (
	"bufio"
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moat/internal/delivery/maildir"
)

// TestCommitRoundsShareOne: callers that join within commitGather share
// one request with all their names; a caller after the round's request
// was made gets a new round, whose fsync begins after its call.
func TestCommitRoundsShareOne(t *testing.T) {
	var b commitRounds
	var calls atomic.Int32
	var mu sync.Mutex
	var got [][]string
	release := make(chan struct{})
	do := func(names []string) error {
		calls.Add(1)
		mu.Lock()
		got = append(got, names)
		mu.Unlock()
		<-release
		return nil
	}
	first := b.join("k", "n0", do)
	for i := range 10 {
		if rd := b.join("k", "n"+string(rune('0'+i%5)), do); rd != first {
			t.Fatal("a caller within the gather window got its own round")
		}
	}
	other := b.join("other", "n0", do)
	if other == first {
		t.Fatal("two Maildirs share a round")
	}
	// Once the round's request is made, a new caller needs the next.
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d requests for two Maildirs, want 2", calls.Load())
	}
	late := b.join("k", "n9", do)
	if late == first {
		t.Fatal("a caller joined a round whose request was already made")
	}
	close(release)
	for _, rd := range []*commitRound{first, other, late} {
		<-rd.done
		if rd.err != nil {
			t.Error(rd.err)
		}
	}
	if calls.Load() != 3 {
		t.Errorf("%d requests, want 3", calls.Load())
	}
	mu.Lock()
	sizes := map[int]int{}
	for _, names := range got {
		sizes[len(names)]++
	}
	if sizes[11] != 1 || sizes[1] != 2 {
		t.Errorf("rounds' names %q, want one of the 11 joins and two of one", got)
	}
	mu.Unlock()
	b.mu.Lock()
	left := len(b.rounds)
	b.mu.Unlock()
	if left != 0 {
		t.Errorf("%d rounds left in the table", left)
	}

	// A full round is sent as it is; the names after it gather in the
	// next.
	var full, rest *commitRound
	count := func(names []string) error {
		mu.Lock()
		got = append(got, names)
		mu.Unlock()
		return nil
	}
	got = nil
	for i := range maildir.MaxCommit + 3 {
		rd := b.join("big", strconv.Itoa(i), count)
		if i == 0 {
			full = rd
		}
		rest = rd
	}
	<-full.done
	<-rest.done
	mu.Lock()
	if len(got) != 2 || len(got[0])+len(got[1]) != maildir.MaxCommit+3 || max(len(got[0]), len(got[1])) != maildir.MaxCommit {
		t.Errorf("%d rounds for %d names, want one full round and one of 3", len(got), maildir.MaxCommit+3)
	}
	mu.Unlock()
}

// TestRunnerCommitOverSocket: deliveries staged through a real executor
// are invisible until Commit, called by many at once, puts them in new/;
// a bad directory or name is refused before anything is sent, a staged
// file that is gone defers (4.3.0), and a caller whose context ends is
// not held.
func TestRunnerCommitOverSocket(t *testing.T) {
	cr := account(t)
	sock, _ := executor(t)
	r := NewRunner(moatBin, sock)
	defer r.Close()
	if !r.StagesMaildir() {
		t.Fatal("a Runner with an executor does not stage Maildir deliveries")
	}
	md := filepath.Join(userDir(t, cr), "Maildir")
	const n = 8
	names := make([]string, n)
	for i := range n {
		job := Job{Kind: KindMaildir, Path: md + "/", Maildir: maildir.Options{
			Key: "s" + string(rune('a'+i)), Arrival: time.Unix(1700000000, 0), Stage: true}}
		p, err := r.DeliverFile(context.Background(), cr, job, strings.NewReader(testMsg))
		if err != nil {
			t.Fatal(err)
		}
		names[i] = filepath.Base(p)
	}
	if c, err := maildir.Count(md + "/"); err != nil || c != 0 {
		t.Fatalf("%d messages (%v) before the commit, want 0", c, err)
	}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			if err := r.Commit(context.Background(), cr, md, name); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if c, err := maildir.Count(md + "/"); err != nil || c != n {
		t.Errorf("%d messages (%v), want %d", c, err, n)
	}

	for _, bad := range [][2]string{{"Maildir", names[0]}, {md + "/", names[0]}, {md, "../x"}, {md, ""}} {
		if err := r.Commit(context.Background(), cr, bad[0], bad[1]); err == nil {
			t.Errorf("Commit(%q, %q) accepted", bad[0], bad[1])
		}
	}
	err := r.Commit(context.Background(), cr, md, "1700000000.Kgone.mx")
	wantDeliveryError(t, err, "4.3.0", "commit in "+md)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Commit(ctx, cr, md, names[0]); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit with an ended context: %v", err)
	}
}

// TestServeRefusesBadCommit: the executor itself checks a commit
// request's directory and names, and refuses one with root's
// credentials.
func TestServeRefusesBadCommit(t *testing.T) {
	cr := account(t)
	sock, _ := executor(t)
	for _, req := range []request{
		{Op: opCommit, Creds: cr, Commit: &wireCommit{Dir: "relative", Names: []string{"x"}}},
		{Op: opCommit, Creds: cr, Commit: &wireCommit{Dir: "/home/u/Maildir", Names: []string{"../../etc/passwd"}}},
		{Op: opCommit, Creds: cr, Commit: &wireCommit{Dir: "/home/u/Maildir"}},
		{Op: opCommit, Creds: cr},
		{Op: opCommit, Creds: Creds{}, Commit: &wireCommit{Dir: "/root/Maildir", Names: []string{"x"}}},
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
