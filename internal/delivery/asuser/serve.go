package asuser

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"moat/internal/maillog"
)

// Bounds on the executor's work: connections served at once (each has at
// most one request in progress), and how long a client may take to send
// its request line or leave a kept connection idle.
const (
	maxActive      = 256
	requestTimeout = 30 * time.Second
)

// Serve is the root executor behind Runner: master.cf's "local" service,
// the privileged half of local(8), virtual(8) and pipe(8) delivery, whose
// unprivileged half runs in the queue manager as mail_owner. It serves one
// request per connection from ln (private/local) until ctx ends, then
// waits for the requests in progress: a delivery already started is
// finished, not cut short by a reload.
//
// Only root, the executor's own uid and the uids in peers (mail_owner)
// may connect: the socket's directory is mail_owner's and mode 0700, and
// the peer's SO_PEERCRED credentials are checked anyway. A request does
// exactly what the package's Deliver, Run and ReadFile do: commands never
// as uid 0, mailbox writes as uid 0 only for root's own mailbox. When a
// client's connection ends before its answer, the child's process group is
// killed.
func Serve(ctx context.Context, ln net.Listener, self string, log *maillog.Logger, peers ...uint32) error {
	allowed := map[uint32]bool{0: true, uint32(os.Geteuid()): true}
	for _, p := range peers {
		allowed[p] = true
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	sem := make(chan struct{}, maxActive)
	pool := newThreadPool()
	defer pool.close() // after wg.Wait: no job is left
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		conn, err := ln.Accept()
		if err != nil {
			<-sem
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			serveConn(ctx, conn, self, log, allowed, pool)
		}()
	}
}

// serveConn answers a client's requests, one at a time, until the client
// closes the connection, stays idle past requestTimeout, or a request
// leaves the connection out of step (content not read to its end frame, a
// refused request): then the connection is closed after the answer.
// Runner keeps connections for deliveries and reads and sends the next
// request on the same one (connection set-up, SO_PEERCRED and a goroutine
// per request were a large part of a Maildir delivery's cost), while a
// command's request still gets a connection of its own.
func serveConn(srv context.Context, conn net.Conn, self string, log *maillog.Logger, allowed map[uint32]bool, pool *threadPool) {
	defer conn.Close()
	uid, pid, err := peerCred(conn)
	if err != nil {
		log.Warning("delivery service: %v", err)
		return
	}
	if !allowed[uid] {
		log.Warning("delivery service: refusing a request from uid %d (pid %d): only root and the mail system owner may ask", uid, pid)
		return
	}
	// When the executor stops, a connection waiting for its next request
	// is closed once it has been idle longer than Runner keeps one idle
	// (so no client sends on a connection being closed); one whose
	// request is in progress is finished first.
	var (
		mu      sync.Mutex
		waiting bool
		idleAt  time.Time
	)
	stop := context.AfterFunc(srv, func() {
		mu.Lock()
		defer mu.Unlock()
		if waiting {
			_ = conn.SetReadDeadline(idleAt.Add(clientKeep + time.Second))
		}
	})
	defer stop()
	br := bufio.NewReaderSize(conn, maxFrame+4)
	// idle waits for the next request within the idle deadline.
	idle := func(wait func() error) bool {
		mu.Lock()
		waiting, idleAt = true, time.Now()
		deadline := idleAt.Add(requestTimeout)
		if srv.Err() != nil {
			deadline = idleAt.Add(clientKeep + time.Second)
		}
		_ = conn.SetReadDeadline(deadline)
		mu.Unlock()
		if err := wait(); err != nil {
			return false // closed, idle too long, or stopping
		}
		mu.Lock()
		waiting = false
		_ = conn.SetReadDeadline(time.Now().Add(requestTimeout))
		mu.Unlock()
		return true
	}
	if !idle(func() error { _, err := br.Peek(1); return err }) {
		return
	}
	for {
		next := serveRequest(srv, conn, br, self, log, uid, pid, pool)
		if next == nil {
			return
		}
		// The byte the watcher read is the next request's first.
		if !idle(func() error { return <-next }) || br.UnreadByte() != nil {
			return
		}
	}
}

// serveRequest answers one request on conn. When the connection may carry
// another (the request was well-formed and its content, if any, was read
// to the end frame) it returns the channel on which the watcher reports
// its read of the next request's first byte; otherwise nil.
func serveRequest(srv context.Context, conn net.Conn, br *bufio.Reader, self string, log *maillog.Logger, uid uint32, pid int32, pool *threadPool) <-chan error {
	req, err := readRequest(br)
	if err != nil {
		log.Warning("delivery service: uid %d (pid %d): %v", uid, pid, err)
		writeResponse(conn, response{Error: err.Error()})
		return nil
	}
	_ = conn.SetReadDeadline(time.Time{})
	// The client's death ends the child: while the message streams, the
	// frame reader sees it; afterwards one read that returns at all
	// cancels ctx. A client that is alive sends nothing until it has the
	// answer, so the byte that read returns then is the first of the
	// next request, and goes back into br.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var watched chan error
	watch := func() {
		watched = make(chan error, 1)
		go func() {
			_, err := br.ReadByte()
			cancel()
			watched <- err
		}()
	}
	body := &frameReader{r: br, ended: watch}
	var resp response
	if req.Op != opRead && privileged(req.Creds) {
		// No caller needs it (local(8) never writes root's mailbox in
		// moat, /file targets and commands of root's aliases use
		// default_privs, virtual_minimum_uid and pipe's user= exclude
		// root), and a mail_owner process that could ask for it could
		// write any file as root.
		log.Warning("delivery service: uid %d (pid %d): refusing a %s request with root privileges (uid %d, gid %d)", uid, pid, req.Op, req.Creds.UID, req.Creds.GID)
		writeResponse(conn, response{Error: "refusing to work with root privileges"})
		return nil
	}
	// finish sends resp, with Keep, and reports whether it went.
	finish := func() bool {
		// The connection carries another request unless the content
		// was not read to its end (the frames left would be taken for
		// the next request), it is a command's, which Runner never
		// reuses, or the executor is stopping (a reload: the next
		// request goes to the new executor).
		resp.Keep = watched != nil && req.Op != opRun && srv.Err() == nil
		return writeResponse(conn, resp)
	}
	sent, answered := false, false
	switch req.Op {
	case opDeliver:
		if req.Probe != nil {
			// Answered from the credentialed thread (probeDeliverIn).
			answer := func(i int, found wireResult, path string, err error) {
				deliverResponse(&resp, body, i, found, path, err)
				sent = finish()
			}
			i, found, path, err, done := probeDeliverIn(ctx, pool, self, req.Creds, req.Probe, *req.Job, body, answer)
			if answered = done; !done {
				deliverResponse(&resp, body, i, found, path, err)
			}
			break
		}
		path, err := deliverFileIn(ctx, pool, self, req.Creds, *req.Job, body)
		deliverResponse(&resp, body, -1, wireResult{}, path, err)
	case opRun:
		c := Command{
			Creds: req.Creds, Argv: req.Cmd.Argv, Env: req.Cmd.Env, Dir: req.Cmd.Dir,
			Stdin: body, TimeLimit: req.Cmd.TimeLimit, OutputLimit: req.Cmd.OutputLimit,
		}
		if c.Env == nil {
			c.Env = []string{}
		}
		resp.Run = runOf(Run(ctx, c))
	case opRead:
		watch()
		f, err := readFileIn(ctx, pool, self, req.Creds, req.Read.Path, req.Read.ReadOptions)
		if err == nil && privileged(req.Creds) && f.Perm&0o004 == 0 {
			// Root reads :include: files of root-owned aliases; it
			// hands its client no file that client could not read
			// anyway (/etc/shadow to a subverted queue manager).
			err = fmt.Errorf("open %s as root: only a world-readable file is read: %w", req.Read.Path, syscall.EACCES)
			f = File{}
		}
		r := wireResult{OK: true, Path: req.Read.Path, Data: f.Data, FileUID: f.UID, FileGID: f.GID, FileMode: uint32(f.Perm)}
		if err != nil {
			r = failure(err)
		}
		resp.Result = &r
	case opCommit:
		watch()
		r := wireResult{OK: true, Path: req.Commit.Dir}
		if err := commitHere(pool, req.Creds, *req.Commit); err != nil {
			r = failure(err)
		}
		resp.Result = &r
	}
	if !answered {
		sent = finish()
	}
	if !sent || !resp.Keep {
		return nil
	}
	return watched
}

// deliverResponse fills in the answer to a deliver request: the file a
// probe found (index i >= 0, with its read), or the delivery's outcome.
func deliverResponse(resp *response, body io.Reader, i int, found wireResult, path string, err error) {
	if i >= 0 {
		// A file (a .forward) settles what happens instead: the
		// message is read to its end frame, unused, so that the
		// connection stays in step.
		_, _ = io.Copy(io.Discard, body)
		resp.Found = &wireFound{Index: i, Result: found}
		return
	}
	r := wireResult{OK: true, Path: path}
	if err != nil {
		r = failure(err)
	}
	resp.Result = &r
}

// writeResponse sends the answer line and reports whether it went.
func writeResponse(conn net.Conn, resp response) bool {
	b, err := jsonLine(resp)
	if err != nil {
		return false
	}
	_ = conn.SetWriteDeadline(time.Now().Add(requestTimeout))
	_, err = conn.Write(b)
	return err == nil
}

// peerCred is the connecting process's uid and pid (SO_PEERCRED, unix(7)).
func peerCred(conn net.Conn) (uid uint32, pid int32, err error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0, 0, fmt.Errorf("not a UNIX-domain connection: %T", conn)
	}
	sc, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := sc.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if cerr != nil {
		return 0, 0, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred.Uid, cred.Pid, nil
}

// privileged says creds carry root's uid or group.
func privileged(c Creds) bool {
	if c.UID == 0 || c.GID == 0 {
		return true
	}
	for _, g := range c.Groups {
		if g == 0 {
			return true
		}
	}
	return false
}
