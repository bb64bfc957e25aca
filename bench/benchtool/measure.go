package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"time"
)

// queueDirs are the Postfix queue directories (qmgr(8), "QUEUES") that
// hold a message until it is delivered or discarded; moat keeps the same
// names. A run is drained when they hold no file.
var queueDirs = [...]string{"maildrop", "incoming", "active", "deferred", "hold"}

// measure runs the load generator after "--" and reports, for the server
// rooted at -pid: wall time of the generator, CPU seconds of the whole
// tree when the generator ended and when delivery finished, peak RSS
// sampled every -every, and how many messages reached the Maildir.
func measure(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("measure", flag.ContinueOnError)
	lf := addLoadFlags(fl)
	maildir := fl.String("maildir", "", "Maildir whose new/ must grow by -sent messages")
	if err := fl.Parse(args); err != nil {
		return err
	}
	cmdArgs := fl.Args()
	if *lf.pid <= 0 || len(cmdArgs) == 0 {
		return errors.New("measure: need -pid and a command after --")
	}
	base := 0
	if *maildir != "" {
		base = countFiles(filepath.Join(*maildir, "new"))
	}
	// Delivery (store) or discarding continues after the last 250; wait,
	// bounded, until the Maildir holds every message and the queue is empty.
	delivered, left := 0, 0
	r, err := measureLoad(lf, cmdArgs, func(rc int) (bool, error) {
		if *maildir != "" {
			delivered = countFiles(filepath.Join(*maildir, "new")) - base
		}
		// A generator that failed sent fewer than -sent: then only the
		// queue draining says the server has finished.
		if *maildir != "" && rc == 0 && delivered < *lf.sent {
			// Not done whatever the queue holds: walking its thousands
			// of entries now would only take CPU from the server (4 % of
			// the machine in a Maildir delivery run, perf).
			return false, nil
		}
		left = queued(*lf.queue)
		return left == 0, nil
	})
	if err != nil {
		return fmt.Errorf("measure: %w", err)
	}
	left = queued(*lf.queue) // also when the time limit ended the wait
	fmt.Fprintf(out, "%s delivered=%d queued=%d\n", r.fields(), delivered, left)
	return nil
}

// pollInterval is how long to wait before looking at the Maildir and the
// queue again, elapsed into a run: every look walks up to thousands of
// directory entries, which on a two-core machine takes CPU from the server
// being measured (13 % of a core at a fixed 50 ms during a 100 s delivery
// run), so the interval grows with the run and stays within 0.5 % of it.
func pollInterval(elapsed time.Duration) time.Duration {
	return min(max(elapsed/200, 50*time.Millisecond), 500*time.Millisecond)
}

// countFiles counts regular files below dir (Postfix hashes deferred/ into
// subdirectories); a missing dir counts as empty.
func countFiles(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished while walking: a message moved on
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}
