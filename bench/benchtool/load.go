package main

import (
	"context"
	"errors"
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
