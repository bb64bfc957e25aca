package asuser

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"moat/internal/maillog"
)

// Bounds on the executor's work: requests served at once (each is one
// child process), and how long a client may take to send its request
// line.
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
			serveConn(conn, self, log, allowed)
		}()
	}
}

// serveConn answers one request.
func serveConn(conn net.Conn, self string, log *maillog.Logger, allowed map[uint32]bool) {
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
	_ = conn.SetReadDeadline(time.Now().Add(requestTimeout))
	br := bufio.NewReaderSize(conn, maxFrame+4)
	req, err := readRequest(br)
	if err != nil {
		log.Warning("delivery service: uid %d (pid %d): %v", uid, pid, err)
		writeResponse(conn, response{Error: err.Error()})
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	// The client's death ends the child: while the message streams, the
	// frame reader sees it; afterwards one read that returns at all
	// (end of file: nothing more is ever sent) cancels ctx.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := func() {
		go func() {
			_, _ = br.ReadByte()
			cancel()
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
		return
	}
	switch req.Op {
	case opDeliver:
		path, err := DeliverFile(ctx, self, req.Creds, *req.Job, body)
		r := wireResult{OK: true, Path: path}
		if err != nil {
			r = failure(err)
		}
		resp.Result = &r
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
		f, err := ReadFile(ctx, self, req.Creds, req.Read.Path, req.Read.ReadOptions)
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
	}
	writeResponse(conn, resp)
}

func writeResponse(conn net.Conn, resp response) {
	b, err := jsonLine(resp)
	if err != nil {
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(requestTimeout))
	_, _ = conn.Write(b)
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
