package asuser

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds on the executor's kept credentialed threads: how long one waits
// idle for the next job of its identity, how many jobs it serves before it
// is retired (Postfix's max_idle and max_use play the same part for
// local(8) processes), and how many wait idle at once.
const (
	threadIdle    = 2 * time.Second
	threadMaxUses = 1000
	threadMaxIdle = 64
)

// threadPool keeps credentialed threads (onThread) for reuse by later jobs
// with exactly the same identity. Starting a thread, setting its
// file-system ids and reading them back from /proc cost a clone, three
// system calls and a file read per job; a Maildir delivery asks the
// executor three times (two .forward probes and the write), all for one
// user, so reuse saves most of that (docs/BENCHMARKS.md).
//
// A kept thread never changes identity: it is made for one uid, gid and
// group list (the key), serves only jobs with that key, and ends (its
// goroutine returns while locked, so the runtime destroys the thread) when
// idle too long or used threadMaxUses times. The privilege boundary is
// therefore the one a fresh thread has. A nil *threadPool starts a new
// thread per job.
type threadPool struct {
	mu     sync.Mutex
	idle   map[string][]*credThread
	n      int // idle threads in all
	closed bool
	quit   chan struct{} // closed by close: idle threads end
	// syncs are the group commits of new/ fsyncs in progress, by
	// identity and directory (groupSync).
	syncs map[string]*groupSync
	// host is the host name in Maildir file names, read once: Postfix's
	// local(8) also takes it once (get_hostname()), and os.Hostname is a
	// uname(2) per delivery otherwise. "" leaves it to maildir.Deliver.
	host string
}

// newThreadPool returns an empty pool; close ends its threads.
func newThreadPool() *threadPool {
	host, _ := os.Hostname()
	return &threadPool{idle: map[string][]*credThread{}, quit: make(chan struct{}), host: host}
}

// maildirJob fills in what the pool gives a Maildir delivery: the shared
// new/ fsync of creds' identity and the host name read once.
func (p *threadPool) maildirJob(creds Creds, job *Job) {
	if p == nil || job.Kind != KindMaildir {
		return
	}
	job.Maildir.SyncNew = p.syncNew(credKey(creds))
	if job.Maildir.Hostname == "" {
		job.Maildir.Hostname = p.host
	}
}

// close ends the idle threads, and the busy ones after their job.
func (p *threadPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.quit)
	}
}

// credThread is one kept thread: jobs arrive on work.
type credThread struct {
	key  string
	work chan threadJob
}

// threadJob is one piece of work and the signal of its end; after, when
// set, runs on the thread once it is idle again (runThen).
type threadJob struct {
	fn, after func()
	done      chan struct{}
}

// credKey names an identity: uid, gid and the supplementary groups in the
// order setgroups(2) is given them.
func credKey(c Creds) string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(uint64(c.UID), 10))
	b.WriteByte(':')
	b.WriteString(strconv.FormatUint(uint64(c.GID), 10))
	for _, g := range c.Groups {
		b.WriteByte(',')
		b.WriteString(strconv.FormatUint(uint64(g), 10))
	}
	return b.String()
}

// run runs work on a thread with creds' file-system identity and waits for
// it: a kept one if one is idle, else a new one that is kept afterwards.
func (p *threadPool) run(creds Creds, work func()) error {
	return p.runThen(creds, work, nil)
}

// runThen is run, and then after on the same thread once it is idle in
// the pool again: the executor answers its client there, and a request
// that follows the answer at once finds the thread instead of starting
// another.
func (p *threadPool) runThen(creds Creds, work, after func()) error {
	if p == nil {
		return onThread(creds, func() {
			work()
			if after != nil {
				after()
			}
		})
	}
	key := credKey(creds)
	t := p.take(key)
	if t == nil {
		var err error
		if t, err = p.start(creds, key); err != nil {
			return err
		}
	}
	j := threadJob{fn: work, after: after, done: make(chan struct{})}
	t.work <- j
	<-j.done
	return nil
}

// take removes and returns an idle thread for key, or nil.
func (p *threadPool) take(key string) *credThread {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := p.idle[key]
	if len(ts) == 0 {
		return nil
	}
	t := ts[len(ts)-1]
	if len(ts) == 1 {
		delete(p.idle, key)
	} else {
		p.idle[key] = ts[:len(ts)-1]
	}
	p.n--
	return t
}

// put makes t idle again; false when the pool is full (t then ends).
func (p *threadPool) put(t *credThread) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.n >= threadMaxIdle {
		return false
	}
	p.idle[t.key] = append(p.idle[t.key], t)
	p.n++
	return true
}

// remove takes t out of the idle list; false when a caller took it first
// (a job is then on its way to t).
func (p *threadPool) remove(t *credThread) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := p.idle[t.key]
	for i, x := range ts {
		if x == t {
			ts = append(ts[:i], ts[i+1:]...)
			if len(ts) == 0 {
				delete(p.idle, t.key)
			} else {
				p.idle[t.key] = ts
			}
			p.n--
			return true
		}
	}
	return false
}

// start makes a thread with creds' identity (checked as onThread checks
// it) and returns it, not yet idle: the caller's job is its first.
func (p *threadPool) start(creds Creds, key string) (*credThread, error) {
	t := &credThread{key: key, work: make(chan threadJob)}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with this goroutine.
		if err := setThreadFS(creds); err != nil {
			ready <- childFailed(err)
			return
		}
		ready <- nil
		idle := time.NewTimer(threadIdle)
		defer idle.Stop()
		uses := 0
		// do runs one job and says whether the thread stays.
		do := func(j threadJob) bool {
			j.fn()
			uses++
			// Idle again before the caller hears of the end, so that
			// its next job finds this thread.
			keep := uses < threadMaxUses && p.put(t)
			if j.after != nil {
				j.after()
			}
			close(j.done)
			return keep
		}
		for {
			var j threadJob
			select {
			case j = <-t.work:
			case <-idle.C:
				if p.remove(t) {
					return
				}
				j = <-t.work // taken meanwhile: its job comes next
			case <-p.quit:
				if p.remove(t) {
					return
				}
				j = <-t.work
			}
			if !do(j) {
				return
			}
			idle.Reset(threadIdle)
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return t, nil
}
