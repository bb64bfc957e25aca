package asuser

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"moat/internal/delivery/maildir"
	"moat/internal/maillog"
)

// threadIdentity is the calling thread's id and file-system uid and gid,
// as the kernel reports them.
func threadIdentity(t *testing.T) (tid int, fsuid, fsgid string) {
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		t.Error(err)
		return 0, "", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && f[0] == "Uid:" {
			fsuid = f[4]
		}
		if len(f) == 5 && f[0] == "Gid:" {
			fsgid = f[4]
		}
	}
	return syscall.Gettid(), fsuid, fsgid
}

// TestThreadPoolReusesByIdentity: a kept thread serves later jobs of the
// same identity only, keeps that identity, and ends when the pool closes.
func TestThreadPoolReusesByIdentity(t *testing.T) {
	cr := account(t)
	other := cr
	other.Groups = []uint32{cr.GID}
	p := newThreadPool()
	defer p.close()
	run := func(c Creds) int {
		var tid int
		var uid, gid string
		if err := p.run(c, func() { tid, uid, gid = threadIdentity(t) }); err != nil {
			t.Fatal(err)
		}
		if uid != strconv.Itoa(int(c.UID)) || gid != strconv.Itoa(int(c.GID)) {
			t.Errorf("job ran with fs ids %s:%s, want %d:%d", uid, gid, c.UID, c.GID)
		}
		return tid
	}
	first := run(cr)
	if again := run(cr); again != first {
		t.Errorf("second job on thread %d, want the kept thread %d", again, first)
	}
	if o := run(other); o == first {
		t.Errorf("a job with other groups ran on thread %d of the first identity", o)
	}
	if again := run(cr); again != first {
		t.Errorf("after another identity's job: thread %d, want %d", again, first)
	}
	// Jobs at once get threads of their own, all with the identity.
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			if err := p.run(cr, func() {
				<-start
				if _, uid, _ := threadIdentity(t); uid != strconv.Itoa(int(cr.UID)) {
					t.Errorf("concurrent job with fs uid %s", uid)
				}
			}); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(start)
	wg.Wait()
	p.close()
	var bad []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		if bad = nonRootFSThreads(t); len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, b := range bad {
		t.Errorf("a closed pool left a thread with a non-root file-system id: %s", b)
	}
}

// countingListener counts the connections Serve accepts.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startExecutor runs Serve on sock (created afresh) and returns its
// accept counter and a stop function that waits for Serve to return.
func startExecutor(t *testing.T, sock string) (*countingListener, func()) {
	cl, cancel, wait := startExecutorCtl(t, sock)
	return cl, func() { cancel(); wait() }
}

// startExecutorCtl is startExecutor with the end of Serve's context and
// the wait for its return apart.
func startExecutorCtl(t *testing.T, sock string) (*countingListener, context.CancelFunc, func()) {
	t.Helper()
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	sink := &logSink{}
	log := maillog.New(maillog.Options{Sink: sink, Fallback: sink, Daemon: "local", PID: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cl, moatBin, log, 0) }()
	var once sync.Once
	wait := func() {
		once.Do(func() {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Serve did not return within 30 s of its end")
			}
			log.Close(context.Background())
		})
	}
	t.Cleanup(func() { cancel(); wait() })
	return cl, cancel, wait
}

// userExecutor makes a test account with a directory it owns, an
// executor whose socket sits beside that directory (counting its
// connections), and a Runner for it.
func userExecutor(t *testing.T) (Creds, string, *countingListener, func(), *Runner) {
	t.Helper()
	cr := account(t)
	dir := userDir(t, cr)
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(filepath.Dir(dir), "local")
	cl, stop := startExecutor(t, sock)
	return cr, dir, cl, stop, NewRunner(moatBin, sock)
}

// TestRunnerKeepsConnection: deliveries and reads share one executor
// connection; a command gets its own; a delivery that leaves content
// unread ends its connection and the next one dials again.
func TestRunnerKeepsConnection(t *testing.T) {
	cr, dir, cl, stop, r := userExecutor(t)
	md := filepath.Join(dir, "Maildir") + "/"
	deliver := func() {
		t.Helper()
		if err := r.Deliver(context.Background(), cr, Job{Kind: KindMaildir, Path: md}, strings.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
	}
	deliver()
	if _, err := r.ReadFile(context.Background(), cr, filepath.Join(dir, "none"), ReadOptions{Limit: 10}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read of a missing file: %v", err)
	}
	deliver()
	if n := cl.n.Load(); n != 1 {
		t.Errorf("%d connections for two deliveries and a read, want 1", n)
	}
	if res := r.Run(context.Background(), Command{Creds: cr, Argv: []string{"/bin/true"}}); res.Err != nil || res.Status != 0 {
		t.Fatalf("command: %+v", res)
	}
	deliver()
	if n := cl.n.Load(); n != 2 {
		t.Errorf("%d connections after a command and a delivery, want 2 (the command's own)", n)
	}
	// Refused before its content is read: that connection is not kept.
	err := r.Deliver(context.Background(), cr, Job{Kind: KindMaildir, Path: "/root/nope/Maildir/"}, strings.NewReader(testMsg))
	wantDeliveryError(t, err, "4.2.0", "Permission denied")
	deliver()
	if n := cl.n.Load(); n != 3 {
		t.Errorf("%d connections after a failed delivery, want 3", n)
	}
	if c, err := maildir.Count(md); err != nil || c != 4 {
		t.Errorf("%d messages in new/ (%v), want 4", c, err)
	}
	// A stopping executor closes a kept connection once it has been idle
	// longer than a Runner keeps one, so Serve returns.
	start := time.Now()
	stop()
	if d := time.Since(start); d < clientKeep {
		t.Errorf("Serve returned %v after its end, before a kept connection could expire", d)
	}
	r.Close()
}

// TestRunnerExecutorRestart: a Runner whose kept connection's executor
// has gone dials the new one instead of failing the delivery.
func TestRunnerExecutorRestart(t *testing.T) {
	cr := account(t)
	dir := userDir(t, cr)
	sock := filepath.Join(filepath.Dir(dir), "local")
	_, stop := startExecutor(t, sock)
	r := NewRunner(moatBin, sock)
	defer r.Close()
	md := filepath.Join(dir, "Maildir") + "/"
	for i := range 2 {
		if err := r.Deliver(context.Background(), cr, Job{Kind: KindMaildir, Path: md}, strings.NewReader(testMsg)); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
		if i == 0 {
			stop()
			startExecutor(t, sock)
		}
	}
	if c, err := maildir.Count(md); err != nil || c != 2 {
		t.Errorf("%d messages in new/ (%v), want 2", c, err)
	}
}

// TestRunnerLeavesStoppingExecutor: a stopping executor (a reload) still
// answers a request on a kept connection but does not keep it, so the
// next request reaches the new executor.
func TestRunnerLeavesStoppingExecutor(t *testing.T) {
	cr := account(t)
	dir := userDir(t, cr)
	sock := filepath.Join(filepath.Dir(dir), "local")
	oldLn, stopOld, waitOld := startExecutorCtl(t, sock)
	r := NewRunner(moatBin, sock)
	defer r.Close()
	md := filepath.Join(dir, "Maildir") + "/"
	deliver := func() {
		t.Helper()
		if err := r.Deliver(context.Background(), cr, Job{Kind: KindMaildir, Path: md}, strings.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
	}
	deliver()
	stopOld()
	deliver() // on the kept connection, answered by the stopping executor
	newLn, _ := startExecutor(t, sock)
	deliver() // a kept connection would take it to the old one again
	waitOld()
	if o, n := oldLn.n.Load(), newLn.n.Load(); o != 1 || n != 1 {
		t.Errorf("connections: %d to the old executor, %d to the new, want 1 and 1", o, n)
	}
	if c, err := maildir.Count(md); err != nil || c != 3 {
		t.Errorf("%d messages in new/ (%v), want 3", c, err)
	}
}

// TestProbeAnswerFromThread: deliveries with a probe are answered from
// the credentialed thread once it is idle in the pool again, so 40 of
// them in a row over one connection reuse one thread (the process grows
// by a few threads at most, not one per delivery), the connection stays
// in step through a probe that finds its file, and every message lands.
func TestProbeAnswerFromThread(t *testing.T) {
	cr, dir, cl, stop, r := userExecutor(t)
	defer stop()
	defer r.Close()
	md := filepath.Join(dir, "Maildir") + "/"
	fwd := filepath.Join(dir, ".forward")
	threads := func() int {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	probe := func(i int) Found {
		t.Helper()
		job := Job{Kind: KindMaildir, Path: md, Maildir: maildir.Options{Key: "p" + strconv.Itoa(i), Arrival: time.Unix(1700000000, 0)}}
		found, err := r.DeliverUnlessFile(context.Background(), cr, []string{fwd}, ReadOptions{Limit: 1024}, job, strings.NewReader(testMsg))
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	probe(0) // starts the identity's thread
	before := threads()
	for i := 1; i < 40; i++ {
		if f := probe(i); f.Index != -1 || f.Path == "" {
			t.Fatalf("delivery %d: %+v", i, f)
		}
	}
	if grown := threads() - before; grown > 4 {
		t.Errorf("the process grew by %d threads over 39 deliveries", grown)
	}
	if err := os.WriteFile(fwd, []byte("elsewhere@example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if f := probe(40); f.Index != 0 || f.Err != nil || !strings.Contains(string(f.File.Data), "elsewhere") {
		t.Fatalf("probe that finds the .forward: %+v", f)
	}
	os.Remove(fwd)
	if f := probe(41); f.Index != -1 {
		t.Fatalf("delivery after the found probe: %+v", f)
	}
	if c, err := maildir.Count(md); err != nil || c != 41 {
		t.Errorf("%d messages in new/ (%v), want 41", c, err)
	}
	if n := cl.n.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}
