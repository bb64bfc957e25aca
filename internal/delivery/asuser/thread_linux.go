package asuser

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"moat/internal/delivery/maildir"
	"moat/internal/delivery/mbox"
)

// deliverOnThread writes one mailbox from a dedicated OS thread whose
// file-system identity (fsuid, fsgid, supplementary groups) is the
// recipient's, instead of from a child process: starting a Go child costs
// about 13 ms of CPU, which made Maildir delivery twenty times slower than
// Postfix's (docs/BENCHMARKS.md). Postfix's local(8) switches its effective
// ids the same way for mailbox writes (set_eugid); on Linux setfsuid(2)
// and setgroups(2) as raw system calls change the calling thread alone,
// and a non-zero fsuid also drops the thread's file-system capabilities
// (capabilities(7)), so the kernel checks every open, create and link as
// the recipient's. The goroutine stays locked to its thread and ends
// without unlocking, so the Go runtime destroys that thread instead of
// reusing it; threads the runtime starts meanwhile come from its template
// thread, never from this one.
//
// The identity is read back from /proc/thread-self/status before anything
// is written: if the kernel did not apply it, nothing is written.
//
// ctx ends the delivery at the next read of the content: the write then
// fails and leaves nothing behind, as a killed child does.
//
// With a pool (the executor's), the thread is one kept for creds' exact
// identity and used again (threadPool); without one it is new and
// discarded.
func deliverOnThread(ctx context.Context, pool *threadPool, creds Creds, job Job, content io.Reader) (string, error) {
	var path string
	var err error
	pool.maildirJob(creds, &job)
	if terr := pool.run(creds, func() {
		path, err = writeMailbox(job, &ctxReader{ctx: ctx, r: content})
	}); terr != nil {
		return "", terr
	}
	if cerr := ctx.Err(); cerr != nil && err != nil {
		return "", childFailed(fmt.Errorf("delivery interrupted: %w", cerr))
	}
	return path, err
}

// readOnThread is ReadFile's work (childRead) on a credentialed thread.
func readOnThread(pool *threadPool, creds Creds, w wireJob) wireResult {
	var r wireResult
	if err := pool.run(creds, func() { r = childRead(w) }); err != nil {
		return failure(err)
	}
	return r
}

// onThread runs work on a new OS thread that has creds' file-system
// identity (see deliverOnThread) and waits for it.
func onThread(creds Creds, work func()) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with this goroutine.
		if err := setThreadFS(creds); err != nil {
			done <- childFailed(err)
			return
		}
		work()
		done <- nil
	}()
	return <-done
}

// ctxReader stops reading once ctx has ended.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// writeMailbox is the mailbox write itself, the same for a child process
// and a credentialed thread.
func writeMailbox(job Job, content io.Reader) (string, error) {
	switch job.Kind {
	case KindMaildir:
		return maildir.Deliver(job.Path, content, job.Maildir)
	case KindMbox:
		if err := mbox.Deliver(job.Path, content, job.Mbox); err != nil {
			return "", err
		}
		return job.Path, nil
	}
	return "", childFailed(fmt.Errorf("unknown mailbox kind %q", job.Kind))
}

// setThreadFS gives the calling (locked) thread creds' file-system
// identity and checks that it took.
func setThreadFS(c Creds) error {
	groups := make([]uint32, len(c.Groups))
	copy(groups, c.Groups)
	var p unsafe.Pointer
	if len(groups) > 0 {
		p = unsafe.Pointer(&groups[0])
	}
	// The raw calls act on this thread only (syscall.Setgroups would act
	// on every thread of the process).
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(groups)), uintptr(p), 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	runtime.KeepAlive(groups)
	// setfsgid/setfsuid return the previous value and never fail
	// visibly; the check below is what proves them.
	syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(c.GID), 0, 0)
	syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(c.UID), 0, 0)
	return checkThreadFS(c)
}

// checkThreadFS reads the thread's credentials back from the kernel: the
// fourth Uid: and Gid: fields are the file-system ids.
func checkThreadFS(c Creds) error {
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return fmt.Errorf("reading the thread's credentials: %w", err)
	}
	want := map[string]uint32{"Uid:": c.UID, "Gid:": c.GID}
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) != 5 {
			continue
		}
		id, ok := want[string(f[0])]
		if !ok {
			continue
		}
		got, err := strconv.ParseUint(string(f[4]), 10, 32)
		if err != nil || uint32(got) != id {
			return fmt.Errorf("thread %s fs id is %s, want %d", f[0], f[4], id)
		}
		delete(want, string(f[0]))
	}
	if len(want) != 0 {
		return fmt.Errorf("thread credentials not found in /proc/thread-self/status")
	}
	return nil
}
