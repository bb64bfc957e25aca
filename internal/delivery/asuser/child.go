package asuser

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"moat/internal/cli"
	"moat/internal/delivery"
	"moat/internal/delivery/maildir"
	"moat/internal/delivery/mbox"
)

// ChildMain is the child's side of Deliver: it reads the job, writes the
// mailbox from its standard input, and reports the outcome to its parent.
// It is only useful under Deliver (descriptors 3 and 4 must be its pipes);
// run by hand it finds no job and exits 1.
func ChildMain(env *cli.Env, prog string, args []string) int {
	if len(args) != 0 {
		return env.Fatalf(prog, "usage: moat %s (run by the delivery agents only)", ChildVerb)
	}
	jobF := os.NewFile(jobFD, "job")
	resF := os.NewFile(resultFD, "result")
	if jobF == nil || resF == nil {
		return env.Fatalf(prog, "no job descriptors")
	}
	if _, err := resF.Stat(); err != nil {
		return env.Fatalf(prog, "no result descriptor: %v", err)
	}
	// Files the mailbox writers create carry their own modes; this is for
	// anything else (a lock file), as master(8)'s umask 077 does.
	syscall.Umask(0o077)
	res := childDeliver(env.Stdin, bufio.NewReaderSize(io.LimitReader(jobF, maxJob+int64(len(commitLine))), 4096))
	b, err := json.Marshal(res)
	if err != nil {
		return env.Fatalf(prog, "encoding result: %v", err)
	}
	if _, err := resF.Write(b); err != nil {
		return env.Fatalf(prog, "writing result: %v", err)
	}
	if err := resF.Close(); err != nil {
		return env.Fatalf(prog, "writing result: %v", err)
	}
	if !res.OK {
		return 1
	}
	return 0
}

// childDeliver does the child's work and never panics on bad input: every
// problem becomes a failure record.
func childDeliver(stdin io.Reader, job *bufio.Reader) wireResult {
	line, err := job.ReadBytes('\n')
	if err != nil {
		return failure(childFailed(fmt.Errorf("reading job: %v", err)))
	}
	w, err := decodeJob(line)
	if err != nil {
		return failure(childFailed(err))
	}
	if w.CheckUID {
		if uid, euid := os.Getuid(), os.Geteuid(); uid != int(w.UID) || euid != int(w.UID) {
			return failure(childFailed(fmt.Errorf("running as uid %d (euid %d), want uid %d", uid, euid, w.UID)))
		}
	}
	if w.Kind == kindRead {
		return childRead(w)
	}
	in := newCommitReader(stdin, job)
	switch w.Kind {
	case KindMaildir:
		path, err := maildir.Deliver(w.Path, in, w.Maildir)
		if err != nil {
			return failure(err)
		}
		return wireResult{OK: true, Path: path}
	case KindMbox:
		if err := mbox.Deliver(w.Path, in, w.Mbox); err != nil {
			return failure(err)
		}
		return wireResult{OK: true, Path: w.Path}
	}
	return failure(childFailed(fmt.Errorf("unknown mailbox kind %q", w.Kind)))
}

// decodeJob parses and checks the job line: only a job that names a known
// kind and an absolute path without NUL comes out.
func decodeJob(line []byte) (wireJob, error) {
	var w wireJob
	if err := json.Unmarshal(line, &w); err != nil {
		return wireJob{}, fmt.Errorf("decoding job: %v", err)
	}
	if err := w.validate(); err != nil {
		return wireJob{}, err
	}
	return w, nil
}

// validate is Job.validate that also admits the internal read kind with a
// bounded limit.
func (w *wireJob) validate() error {
	if w.Kind != kindRead {
		return w.Job.validate()
	}
	if w.Limit <= 0 || w.Limit > MaxReadLimit {
		return fmt.Errorf("read limit %d out of range", w.Limit)
	}
	j := Job{Kind: KindMbox, Path: w.Path}
	return j.validate()
}

// failure turns an error into the record the parent rebuilds a
// *delivery.Error from; anything unclassified defers.
func failure(err error) wireResult {
	r := wireResult{DSN: "4.3.0", Text: err.Error()}
	var de *delivery.Error
	if errors.As(err, &de) {
		r.DSN, r.Text = de.DSN, de.Text
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		r.Errno = int(errno)
	}
	return r
}
