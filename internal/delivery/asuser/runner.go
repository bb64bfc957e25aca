package asuser

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"moat/internal/delivery"
)

// Runner runs deliveries, commands and file reads with a recipient's
// credentials. With no socket it forks the children itself (Deliver, Run,
// ReadFile: a root process, a development set-up, unit tests). With the
// socket of the root executor (Serve, master.cf's "local" service) it asks
// the executor to, so that the queue manager hosting the agents runs as
// mail_owner, as Postfix's qmgr(8) does, while only the executor keeps
// root (local(8), pipe(8) and virtual(8) are Postfix's root daemons).
//
// A Runner keeps its connections to the executor for later deliveries and
// reads (at most maxIdleConns, each for clientKeep), as Postfix's qmgr
// keeps its delivery agents' connections; Close closes them.
type Runner struct {
	self, socket string
	mu           sync.Mutex
	idle         []idleConn
	commits      commitRounds
}

// idleConn is a kept executor connection and when it went idle.
type idleConn struct {
	c     net.Conn
	since time.Time
}

// clientKeep is how long a Runner keeps an idle connection; the executor
// keeps a connection at least this long (serveConn), so a kept one is
// never being closed by the executor when it is used. maxIdleConns bounds
// the connections kept (one per delivery in progress is what reuse needs).
const (
	clientKeep   = 2 * time.Second
	maxIdleConns = 16
)

// NewRunner returns a Runner that forks `self delivery-child` and commands
// itself when socket is "", and otherwise sends each request to the
// executor listening on the UNIX socket socket.
func NewRunner(self, socket string) *Runner {
	return &Runner{self: self, socket: socket}
}

// Deliver is the package's Deliver, here or in the executor.
func (r *Runner) Deliver(ctx context.Context, creds Creds, job Job, content io.Reader) error {
	_, err := r.DeliverFile(ctx, creds, job, content)
	return err
}

// DeliverFile is the package's DeliverFile, here or in the executor.
func (r *Runner) DeliverFile(ctx context.Context, creds Creds, job Job, content io.Reader) (string, error) {
	if r.socket == "" {
		return DeliverFile(ctx, r.self, creds, job, content)
	}
	if err := job.validate(); err != nil {
		return "", childFailed(err)
	}
	resp, readErr, err := r.call(ctx, request{Op: opDeliver, Creds: creds, Job: &job}, content, maxResult, true)
	switch {
	case readErr != nil:
		return "", &delivery.Error{DSN: "4.3.0", Text: string(job.Kind) + " delivery failed: error reading message: " + delivery.Strerror(readErr), Err: readErr}
	case ctx.Err() != nil && err != nil:
		return "", childFailed(fmt.Errorf("delivery interrupted: %w", ctx.Err()))
	case err != nil:
		return "", childFailed(err)
	case resp.Result == nil:
		return "", childFailed(errors.New("the delivery service sent no outcome"))
	case !resp.Result.OK:
		return "", resp.Result.err()
	}
	return resp.Result.Path, nil
}

// Run is the package's Run, here or in the executor. The command's
// standard input is streamed to the executor; the result is the same.
func (r *Runner) Run(ctx context.Context, c Command) CommandResult {
	if r.socket == "" {
		return Run(ctx, c)
	}
	wc := &wireCommand{Argv: c.Argv, Env: c.Env, Dir: c.Dir, TimeLimit: c.TimeLimit, OutputLimit: min(max(c.OutputLimit, 0), maxOutputLimit)}
	if err := wc.validate(); err != nil {
		return CommandResult{Err: fmt.Errorf("asuser: %w", err)}
	}
	content := c.Stdin
	if content == nil {
		content = eofReader{}
	}
	// JSON may escape every output byte as \u00XX.
	limit := int64(maxResult + 6*wc.OutputLimit)
	resp, readErr, err := r.call(ctx, request{Op: opRun, Creds: c.Creds, Cmd: wc}, content, limit, false)
	switch {
	case readErr != nil:
		// The executor killed the command, as Run does when its input
		// fails.
		return CommandResult{Signal: int(syscall.SIGKILL)}
	case ctx.Err() != nil && err != nil:
		return CommandResult{Signal: int(syscall.SIGKILL), TimedOut: true}
	case err != nil:
		return CommandResult{Err: fmt.Errorf("asuser: %w", err)}
	case resp.Run == nil:
		return CommandResult{Err: errors.New("asuser: the delivery service sent no command result")}
	}
	return resp.Run.result()
}

// ReadFile is the package's ReadFile, here or in the executor.
func (r *Runner) ReadFile(ctx context.Context, creds Creds, path string, opt ReadOptions) (File, error) {
	if r.socket == "" {
		return ReadFile(ctx, r.self, creds, path, opt)
	}
	w := wireJob{Job: Job{Kind: kindRead, Path: path}, Limit: opt.Limit}
	if err := w.validate(); err != nil {
		return File{}, childFailed(err)
	}
	resp, _, err := r.call(ctx, request{Op: opRead, Creds: creds, Read: &wireRead{Path: path, ReadOptions: opt}}, nil, maxResult+2*opt.Limit, true)
	switch {
	case ctx.Err() != nil && err != nil:
		return File{}, childFailed(fmt.Errorf("read interrupted: %w", ctx.Err()))
	case err != nil:
		return File{}, childFailed(err)
	case resp.Result == nil:
		return File{}, childFailed(errors.New("the delivery service sent no outcome"))
	case !resp.Result.OK:
		return File{}, resp.Result.err()
	}
	return fileOf(*resp.Result), nil
}

// call sends one request (and content, unless nil, as frames) and reads
// the answer of at most limit bytes. readErr is a failure to read content:
// the connection is then closed before the end frame, so the executor
// kills the child. ctx's end closes the connection too. Transport errors
// keep no errno (%v): a missing socket must not read as a missing file.
//
// With keep, the request may go on a kept connection, and the connection
// is kept afterwards if the exchange ended in step (the whole content
// sent, a well-formed answer) and the executor said it keeps it too. A request whose line cannot even be sent on
// a kept connection (the executor restarted) is sent again on a new one:
// nothing of it reached the executor, and no content was read yet.
func (r *Runner) call(ctx context.Context, req request, content io.Reader, limit int64, keep bool) (resp response, readErr, err error) {
	line, err := jsonLine(req)
	if err != nil {
		return response{}, nil, fmt.Errorf("encoding request: %v", err)
	}
	// Content of at most one frame (most mail) is read first and goes
	// with the request line in one write from this goroutine: no writer
	// goroutine to start and hand off to, and the executor's first read
	// holds the whole request, so it need not wait for the poller again
	// (docs/BENCHMARKS.md, issue 5 item 9, fifth pass). A read error
	// then ends the call before anything is sent, which the executor
	// cannot tell from a client that never asked.
	if content != nil {
		pre, rerr := readPrefix(content, maxFrame+1)
		if rerr != nil {
			return response{}, rerr, nil
		}
		if len(pre) <= maxFrame {
			line = appendFrames(line, pre)
			content = nil
		} else {
			content = io.MultiReader(bytes.NewReader(pre), content)
		}
	}
	var conn net.Conn
	if keep {
		conn = r.take()
	}
	if conn != nil {
		if _, werr := conn.Write(line); werr != nil {
			conn.Close()
			conn = nil
		}
	}
	if conn == nil {
		var d net.Dialer
		if conn, err = d.DialContext(ctx, "unix", r.socket); err != nil {
			return response{}, nil, fmt.Errorf("delivery service: %v", err)
		}
		if _, err := conn.Write(line); err != nil {
			conn.Close()
			return response{}, nil, fmt.Errorf("delivery service: sending request: %v", err)
		}
	}
	var closeOnce sync.Once
	closeConn := func() { closeOnce.Do(func() { conn.Close() }) }
	stop := context.AfterFunc(ctx, closeConn)
	kept := false
	defer func() {
		if !stop() || !kept {
			closeConn()
			return
		}
		r.put(conn)
	}()

	var wg sync.WaitGroup
	sent := content == nil
	if content != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bw := bufio.NewWriterSize(conn, maxFrame+4)
			fw := frameWriter{bw}
			src := &errReader{r: content}
			_, werr := io.Copy(fw, src)
			if src.err != nil {
				readErr = src.err
				closeConn()
				return
			}
			if werr == nil && fw.Close() == nil {
				sent = bw.Flush() == nil
			}
		}()
	}
	br := bufio.NewReader(io.LimitReader(conn, limit+1))
	ans, lerr := readLine(br, int(limit))
	if !keep || lerr != nil || br.Buffered() != 0 {
		// The answer is in (or the executor is gone): a writer still
		// streaming to an executor that stopped reading ends now.
		closeConn()
	} else {
		// An executor that answers before the end frame closes the
		// connection, which ends the writer; the deadline bounds one
		// that does not.
		_ = conn.SetWriteDeadline(time.Now().Add(requestTimeout))
	}
	wg.Wait()
	if readErr != nil {
		return response{}, readErr, nil
	}
	if lerr != nil {
		return response{}, nil, fmt.Errorf("delivery service: reading answer: %v", lerr)
	}
	if err := json.Unmarshal(ans, &resp); err != nil {
		return response{}, nil, fmt.Errorf("delivery service: decoding answer: %v", err)
	}
	if resp.Error != "" {
		return response{}, nil, fmt.Errorf("delivery service refused the request: %s", resp.Error)
	}
	if keep && sent && resp.Keep {
		_ = conn.SetWriteDeadline(time.Time{})
		kept = true
	}
	return resp, nil, nil
}

// take returns a kept connection that is still open, or nil.
func (r *Runner) take() net.Conn {
	now := time.Now()
	for {
		r.mu.Lock()
		n := len(r.idle)
		if n == 0 {
			r.mu.Unlock()
			return nil
		}
		ic := r.idle[n-1]
		r.idle = r.idle[:n-1]
		r.mu.Unlock()
		if now.Sub(ic.since) < clientKeep && open(ic.c) {
			return ic.c
		}
		ic.c.Close()
	}
}

// put keeps conn for a later request, or closes it when enough are kept.
// Connections idle past clientKeep are closed here too.
func (r *Runner) put(conn net.Conn) {
	now := time.Now()
	r.mu.Lock()
	var stale []net.Conn
	live := r.idle[:0]
	for _, ic := range r.idle {
		if now.Sub(ic.since) >= clientKeep {
			stale = append(stale, ic.c)
		} else {
			live = append(live, ic)
		}
	}
	r.idle = live
	if len(r.idle) < maxIdleConns {
		r.idle = append(r.idle, idleConn{c: conn, since: now})
		conn = nil
	}
	r.mu.Unlock()
	for _, c := range stale {
		c.Close()
	}
	if conn != nil {
		conn.Close()
	}
}

// Close closes the kept connections. The Runner stays usable.
func (r *Runner) Close() error {
	r.mu.Lock()
	idle := r.idle
	r.idle = nil
	r.mu.Unlock()
	for _, ic := range idle {
		ic.c.Close()
	}
	return nil
}

// open reports whether the executor has not closed an idle connection:
// nothing is readable on it (the executor sends nothing unasked, so
// readable means end of file or an error).
func open(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN
		return true
	}); err != nil {
		return false
	}
	return alive
}

// eofReader is an empty message.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// readPrefix reads content up to its end or limit bytes, whichever comes
// first. It starts with room for a typical message, so that reading a
// queue file's content takes one read(2), where io.ReadAll's small first
// buffer took four.
func readPrefix(content io.Reader, limit int) ([]byte, error) {
	b := make([]byte, 0, min(limit, 8<<10))
	for len(b) < limit {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(limit, 2*cap(b))-len(b))
		}
		n, err := content.Read(b[len(b):min(cap(b), limit)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}
