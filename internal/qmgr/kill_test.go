package qmgr

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/queue"
)

// TestKillChild is the queue manager run by TestKillDuringDelivery in a
// child process, so that it can be killed with SIGKILL mid-delivery.
func TestKillChild(t *testing.T) {
	dir := os.Getenv("MOAT_QMGR_KILL_CONFIG")
	if dir == "" {
		t.Skip("run by TestKillDuringDelivery")
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := queue.OptionsFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(cfg.Get("queue_directory"), opts)
	if err != nil {
		t.Fatal(err)
	}
	log := maillog.New(maillog.Options{SyslogName: "postfix", Daemon: "qmgr"})
	m, err := New(Deps{Config: cfg, Log: log, Queue: q, Agents: testAgents(nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = m.Run(ctx)
}

// A queue manager killed with SIGKILL while delivering loses nothing and
// delivers again at most what was in flight: after a restart every
// recipient has its message, and the duplicates are bounded by the number
// of deliveries that can be between the Maildir write and the queue record
// (one per worker; RFC 5321 section 6.1 prefers a duplicate to a loss).
func TestKillDuringDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	e := newEnv(t, "local_destination_concurrency_limit = 4\n")
	const n = 60
	var ids []string
	for range n {
		ids = append(ids, e.put("s@example.org", "kim@mx.test", "lou@mx.test", "max@mx.test"))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.v")
	cmd.Env = append(os.Environ(), "MOAT_QMGR_KILL_CONFIG="+e.fix.ConfigDir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the child's first deliveries", 20*time.Second, func() bool { return e.count("max") >= 3 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	before := e.count("kim") + e.count("lou") + e.count("max")
	if before >= 3*n {
		t.Skip("the child finished before it was killed; nothing to recover")
	}
	active, _ := e.fix.Queue.List(queue.Active)
	t.Logf("killed after %d of %d deliveries, %d messages in active/", before, 3*n, len(active))

	e.start()
	e.waitFor("every message after the restart", 30*time.Second, func() bool {
		for _, id := range ids {
			if !e.gone(id) {
				return false
			}
		}
		return true
	})
	workers := e.m.set.workers
	for _, user := range []string{"kim", "lou", "max"} {
		got := e.count(user)
		t.Logf("%s: %d messages", user, got)
		if got < n || got > n+workers {
			t.Errorf("%s has %d messages, want %d (at most %d duplicates)", user, got, n, workers)
		}
		if tmp, _ := os.ReadDir(filepath.Join(e.spool, user, "tmp")); len(tmp) > workers {
			t.Errorf("%s: %d files left in tmp/", user, len(tmp))
		}
	}
}
