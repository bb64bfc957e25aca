package asuser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"moat/internal/delivery"
)

// maxProbePaths bounds the files one DeliverUnlessFile request reads
// first (forward_path has two entries by default).
const maxProbePaths = 64

// Found is what DeliverUnlessFile found before the delivery.
type Found struct {
	// Index is the first path that did not answer "no such file", or -1
	// when none exists and the job was done (its outcome is the error
	// DeliverUnlessFile returns).
	Index int
	// File and Err are that path's read, as ReadFile returns them.
	File File
	Err  error
	// Path, when Index is -1 and the job was done, is the file written
	// (DeliverFile's path).
	Path string
}

// wireProbe is the file list of a deliver request that reads first.
type wireProbe struct {
	Paths []string
	Limit int64
}

// wireFound answers a deliver request whose probe found a file: the
// delivery was not done.
type wireFound struct {
	Index  int
	Result wireResult
}

func (p *wireProbe) validate() error {
	if len(p.Paths) == 0 || len(p.Paths) > maxProbePaths {
		return fmt.Errorf("%d paths to read first (1 to %d)", len(p.Paths), maxProbePaths)
	}
	for _, path := range p.Paths {
		w := wireJob{Job: Job{Kind: kindRead, Path: path}, Limit: p.Limit}
		if err := w.validate(); err != nil {
			return err
		}
	}
	return nil
}

// DeliverUnlessFile reads paths in order with creds, as ReadFile does
// without Follow, and does job only when none of them exists: local(8)'s
// .forward files come before the mailbox (local(8) "DELIVERY METHOD
// CONTROLS"), and asking the executor once for both saves a round trip
// per delivery to the common recipient without a .forward. The first
// path whose read ends in anything but "no such file" (its content, or
// another error) stops the probe and the job is not done; the caller then
// acts on that file as it would on ReadFile's answer. With Index -1 the
// error is the job's, as Deliver returns it; a transport failure is a
// Failed error with Index -1 too (the caller cannot tell whether a file
// was found, and defers).
func (r *Runner) DeliverUnlessFile(ctx context.Context, creds Creds, paths []string, opt ReadOptions, job Job, content io.Reader) (Found, error) {
	opt.Follow = false
	if r.socket == "" || len(paths) == 0 {
		for i, p := range paths {
			f, err := r.ReadFile(ctx, creds, p, opt)
			if errors.Is(err, os.ErrNotExist) && !Failed(err) {
				continue
			}
			return Found{Index: i, File: f, Err: err}, nil
		}
		path, err := r.DeliverFile(ctx, creds, job, content)
		return Found{Index: -1, Path: path}, err
	}
	probe := &wireProbe{Paths: paths, Limit: opt.Limit}
	if err := probe.validate(); err != nil {
		return Found{Index: -1}, childFailed(err)
	}
	if err := job.validate(); err != nil {
		return Found{Index: -1}, childFailed(err)
	}
	resp, readErr, err := r.call(ctx, request{Op: opDeliver, Creds: creds, Job: &job, Probe: probe}, content, maxResult+2*opt.Limit, true)
	switch {
	case readErr != nil:
		return Found{Index: -1}, &delivery.Error{DSN: "4.3.0", Text: string(job.Kind) + " delivery failed: error reading message: " + delivery.Strerror(readErr), Err: readErr}
	case ctx.Err() != nil && err != nil:
		return Found{Index: -1}, childFailed(fmt.Errorf("delivery interrupted: %w", ctx.Err()))
	case err != nil:
		return Found{Index: -1}, childFailed(err)
	case resp.Found != nil:
		i := resp.Found.Index
		if i < 0 || i >= len(paths) {
			return Found{Index: -1}, childFailed(fmt.Errorf("the delivery service named file %d of %d", i, len(paths)))
		}
		if !resp.Found.Result.OK {
			return Found{Index: i, Err: resp.Found.Result.err()}, nil
		}
		return Found{Index: i, File: fileOf(resp.Found.Result)}, nil
	case resp.Result == nil:
		return Found{Index: -1}, childFailed(errors.New("the delivery service sent no outcome"))
	case !resp.Result.OK:
		return Found{Index: -1}, resp.Result.err()
	}
	return Found{Index: -1, Path: resp.Result.Path}, nil
}

// probeIn is the executor's side of a probe: the index and read of the
// first path that exists, or -1.
func probeIn(ctx context.Context, pool *threadPool, self string, creds Creds, p *wireProbe) (int, wireResult) {
	for i, path := range p.Paths {
		f, err := readFileIn(ctx, pool, self, creds, path, ReadOptions{Limit: p.Limit})
		if errors.Is(err, os.ErrNotExist) && !Failed(err) {
			continue
		}
		if err != nil {
			return i, failure(err)
		}
		return i, wireResult{OK: true, Path: path, Data: f.Data, FileUID: f.UID, FileGID: f.GID, FileMode: uint32(f.Perm)}
	}
	return -1, wireResult{}
}
