package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// sampler records a server's peak resident memory and process count by
// sampling its process tree every interval until stop.
type sampler struct {
	mu      sync.Mutex
	peak    int64
	procs   int
	stopped chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

func startSampler(pid int, every time.Duration) *sampler {
	s := &sampler{stopped: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if u, err := sampleTree("/proc", pid, false); err == nil {
				s.mu.Lock()
				s.peak = max(s.peak, u.RSSBytes)
				s.procs = max(s.procs, u.Procs)
				s.mu.Unlock()
			}
			select {
			case <-s.stopped:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling (once) and returns the peak RSS in bytes and the
// most processes seen.
func (s *sampler) stop() (peak int64, procs int) {
	s.once.Do(func() { close(s.stopped) })
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.procs
}

// interrupts is cancelled by SIGTERM or SIGINT: bench/run's watchdog and
// Ctrl-C must end the load and the waits after it, so that bench/run's
// cleanup trap runs (the servers, the private Dovecot, the temp dir).
func interrupts() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// runLoad runs the load generator args in its own process group, bounded
// by timeout, and returns when it started, how long it ran and its exit
// status (124 on timeout). When sctx ends (an interrupt) the generator's
// whole group is killed rather than left running, and an error is
// returned.
func runLoad(sctx context.Context, timeout time.Duration, args []string) (start time.Time, wall time.Duration, rc int, err error) {
	ctx, cancel := context.WithTimeout(sctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Its own process group, so a timeout kills every smtp-source thread's
	// connections at once and the shell's Ctrl-C reaches bench/run first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start = time.Now()
	runErr := cmd.Run()
	wall = time.Since(start)
	if runErr == nil {
		return start, wall, 0, nil
	}
	rc = -1
	var ee *exec.ExitError
	if errors.As(runErr, &ee) {
		rc = ee.ExitCode()
	}
	if ctx.Err() != nil {
		rc = 124
	}
	if sctx.Err() != nil {
		return start, wall, rc, fmt.Errorf("interrupted: %w", runErr)
	}
	return start, wall, rc, nil
}

// queued counts the messages left in a server's queue directories (0
// without a queue directory to look at).
func queued(queue string) int {
	if queue == "" {
		return 0
	}
	n := 0
	for _, d := range queueDirs {
		n += countFiles(filepath.Join(queue, d))
	}
	return n
}

// waitDone calls done until it reports true or fails, at most for
// timeout, at intervals that grow with the time since start
// (pollInterval). Running out of time is no error: the caller reports
// what done saw last. The watchdog's SIGTERM (sctx) ends the wait with an
// error: ignoring it once kept bench/run (waiting on this command) from
// running its cleanup trap until timeout's SIGKILL took everything down
// and left the private Dovecot and the temp dir behind.
func waitDone(sctx context.Context, start time.Time, timeout time.Duration, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-sctx.Done():
			return errors.New("interrupted")
		case <-time.After(pollInterval(time.Since(start))):
		}
	}
}

// loadFlags are the flags measure and relay share: the server's root
// process, the sampling interval and the two time limits.
type loadFlags struct {
	pid                  *int
	every                *time.Duration
	timeout, doneTimeout *time.Duration
	sent                 *int
	queue                *string
}

func addLoadFlags(fl *flag.FlagSet) loadFlags {
	return loadFlags{
		pid:         fl.Int("pid", 0, "root process of the server"),
		every:       fl.Duration("every", 100*time.Millisecond, "RSS sampling interval"),
		timeout:     fl.Duration("timeout", 5*time.Minute, "limit for the load generator"),
		doneTimeout: fl.Duration("done-timeout", 5*time.Minute, "limit for delivery after the generator ends"),
		sent:        fl.Int("sent", 0, "messages the generator sends"),
		queue:       fl.String("queue", "", "queue_directory that must drain"),
	}
}

// loadRun is what one measured run gives, whatever ends it.
type loadRun struct {
	rc                 int
	wall, done         time.Duration
	cpuAccept, cpuDone float64
	peakRSS            int64
	procs              int
}

// fields is the start of the raw result line both commands print.
func (r loadRun) fields() string {
	return fmt.Sprintf("rc=%d wall=%.3f done=%.3f cpu_accept=%.2f cpu_done=%.2f peak_rss_kb=%d procs=%d",
		r.rc, r.wall.Seconds(), r.done.Seconds(), r.cpuAccept, r.cpuDone, r.peakRSS/1024, r.procs)
}

// measureLoad runs the load generator args against the server at
// lf.pid while sampling its process tree, then waits (waitDone) until
// finished, given the generator's exit status, says the server is done;
// the CPU figures are the tree's since just before the generator started.
func measureLoad(lf loadFlags, args []string, finished func(rc int) (bool, error)) (loadRun, error) {
	var r loadRun
	before, err := sampleTree("/proc", *lf.pid, false)
	if err != nil {
		return r, err
	}
	smp := startSampler(*lf.pid, *lf.every)
	defer smp.stop()
	sctx, stop := interrupts()
	defer stop()
	start, wall, rc, err := runLoad(sctx, *lf.timeout, args)
	if err != nil {
		return r, err
	}
	r.rc, r.wall = rc, wall
	accepted, err := sampleTree("/proc", *lf.pid, false)
	if err != nil {
		return r, err
	}
	if err := waitDone(sctx, start, *lf.doneTimeout, func() (bool, error) { return finished(rc) }); err != nil {
		return r, fmt.Errorf("%w while waiting for the server to finish", err)
	}
	r.done = time.Since(start)
	final, err := sampleTree("/proc", *lf.pid, false)
	if err != nil {
		return r, err
	}
	r.cpuAccept = accepted.CPUSeconds() - before.CPUSeconds()
	r.cpuDone = final.CPUSeconds() - before.CPUSeconds()
	r.peakRSS, r.procs = smp.stop()
	return r, nil
}
