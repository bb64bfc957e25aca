package asuser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// defaultPath is where a bare command name is looked up when Env has no
// PATH: local(8)'s default command_execution_directory-free search path
// (postconf(5) "export_environment" leaves PATH to the admin).
const defaultPath = "/usr/bin:/bin"

// drainBuf is the read chunk for a command's output; what is beyond
// OutputLimit is read into it and dropped, so a chatty command can neither
// block on a full pipe nor grow our memory.
const drainBuf = 4096

// Run runs c and waits for it.
//
// A root process runs the command as c.Creds (uid, gid and exactly
// c.Creds.Groups as supplementary groups) in a new process group; a process
// that is not root cannot change identity and runs it as itself, which is
// what a development set-up without root wants. A command never runs as
// root: Creds.UID 0 is refused, whoever calls (local(8) "SECURITY": root's
// and root-owned aliases' commands run as default_privs, which the caller
// maps before it gets here).
//
// Standard output and error share one pipe, as in Postfix's pipe_command(),
// so the reason text keeps their interleaving. When TimeLimit passes or ctx
// ends, the whole process group gets SIGKILL and TimedOut is set. Run
// returns only after the command has been reaped and its I/O goroutines have
// ended; Stdin must therefore be a reader that does not block forever (a
// queue file, a buffer).
func Run(ctx context.Context, c Command) CommandResult {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return CommandResult{Err: errors.New("asuser: empty command")}
	}
	if c.Creds.UID == 0 {
		return CommandResult{Err: fmt.Errorf("asuser: refusing to run %q with root privileges", c.Argv[0])}
	}
	for _, a := range c.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return CommandResult{Err: fmt.Errorf("asuser: NUL byte in command argument of %q", c.Argv[0])}
		}
	}
	path, err := lookPath(c.Argv[0], c.Env)
	if err != nil {
		return CommandResult{Err: err}
	}
	dir := c.Dir
	if dir == "" {
		dir = "/"
	}
	env := c.Env
	if env == nil {
		env = []string{} // nil would make os/exec inherit ours
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return CommandResult{Err: fmt.Errorf("asuser: stdin pipe: %w", err)}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return CommandResult{Err: fmt.Errorf("asuser: output pipe: %w", err)}
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        c.Argv,
		Env:         env,
		Dir:         dir,
		Stdin:       inR,
		Stdout:      outW,
		Stderr:      outW,
		SysProcAttr: sysProcAttr(c.Creds),
	}
	err = cmd.Start()
	// The child has its copies; ours would keep the pipes open forever.
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return CommandResult{Err: fmt.Errorf("asuser: cannot execute %s: %w", c.Argv[0], err)}
	}
	pgid := cmd.Process.Pid

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		feed(inW, c.Stdin, pgid)
	}()
	var out []byte
	outDone := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(outDone)
		out = collect(outR, c.OutputLimit)
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()

	var limit <-chan time.Time
	if c.TimeLimit > 0 {
		t := time.NewTimer(c.TimeLimit)
		defer t.Stop()
		limit = t.C
	}
	res := CommandResult{}
	kill := func() {
		res.TimedOut = true
		// The negative pid names the group (kill(2)); ESRCH just means
		// everyone is gone already.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	// First the leader's exit, then the output's end-of-file: a command
	// that backgrounds a child holding stdout keeps its group alive, and
	// the time limit still applies to that child (pipe_command() reads
	// until EOF within the same deadline).
	var waitErr error
	exited, eof := false, false
	for !exited || !eof {
		select {
		case waitErr = <-waitDone:
			exited = true
			waitDone = nil
		case <-outDone:
			eof = true
			outDone = nil
		case <-limit:
			kill()
			limit = nil
		case <-ctx.Done():
			kill()
			ctx = context.Background()
		}
		if res.TimedOut && exited && !eof {
			// Killed: whatever still holds the pipe is a process
			// outside the group (setsid); stop reading for it.
			outR.Close()
			<-outDone
			eof = true
		}
	}
	// A command that exits without reading all of its input leaves the
	// feeder blocked on a full pipe; closing our end releases it.
	inW.Close()
	wg.Wait()
	outR.Close()
	res.Output = string(out)
	if ps := cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			switch {
			case ws.Signaled():
				res.Signal = int(ws.Signal())
			case ws.Exited():
				res.Status = ws.ExitStatus()
			}
		}
	} else if waitErr != nil {
		res.Err = fmt.Errorf("asuser: waiting for %s: %w", c.Argv[0], waitErr)
	}
	return res
}

// sysProcAttr gives the child its own process group (so a time limit kills
// what it started too) and, when we are root, the recipient's identity.
// Groups is always set when dropping: a nil list would leave root's own
// supplementary groups in the child.
func sysProcAttr(cr Creds) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if os.Geteuid() == 0 {
		groups := cr.Groups
		if groups == nil {
			groups = []uint32{}
		}
		attr.Credential = &syscall.Credential{Uid: cr.UID, Gid: cr.GID, Groups: groups}
	}
	return attr
}

// feed copies the message to the command's standard input and closes it.
// A command may stop reading early (EPIPE); that is its business, and its
// exit status says how it went, as in Postfix's pipe_command(). A failure
// to read the message (a damaged queue file, the executor's client gone)
// kills the command's group before its input closes, so it never takes a
// short message for the whole one.
func feed(w *os.File, r io.Reader, pgid int) {
	if r != nil {
		src := &errReader{r: r}
		_, _ = io.Copy(w, src)
		if src.err != nil {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
	w.Close()
}

// collect keeps the first limit bytes of r and drops the rest until EOF.
func collect(r io.Reader, limit int) []byte {
	if limit < 0 {
		limit = 0
	}
	var kept []byte
	buf := make([]byte, drainBuf)
	for {
		n, err := r.Read(buf)
		if room := limit - len(kept); room > 0 && n > 0 {
			kept = append(kept, buf[:min(n, room)]...)
		}
		if err != nil {
			return kept
		}
	}
}

// lookPath resolves a bare command name through the PATH of the command's
// own environment (not ours: nothing is inherited), as execvp(3) in
// Postfix's exec_command() does.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	search := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			search = v
		}
	}
	for _, d := range filepath.SplitList(search) {
		if d == "" || !filepath.IsAbs(d) {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("asuser: command not found: %s", name)
}
