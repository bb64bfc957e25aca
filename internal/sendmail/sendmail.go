// Package sendmail is sendmail(1), Postfix's Sendmail-compatible
// submission command: it reads a message from standard input (or an SMTP
// dialogue with -bs) and hands it to postdrop, which drops it into
// maildrop/ for pickup (docs/SUBMISSION.md). Like Postfix's, it is not
// set-user or set-group ID: only the postdrop it executes is, and that
// checks everything again. A caller that may write maildrop/ itself (root,
// mail_owner) gets the same checks in-process instead of an exec.
//
// The other modes run the commands Postfix's sendmail runs: -bp is
// postqueue -p (mailq), -bi newaliases, -q postqueue -f, -bd postfix start.
// -bv submits a verification request instead of a message (verify.go).
package sendmail

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"moat/internal/cli"
	"moat/internal/config"
	"moat/internal/maildrop"
	"moat/internal/postalias"
	"moat/internal/postdrop"
	"moat/internal/postqueue"
	"moat/internal/queue"
)

// run is one invocation.
type run struct {
	env  *cli.Env
	prog string
	opts *options
	dir  string
	cfg  *config.Config
	sub  postdrop.Submitter
}

// fatal prints Postfix's "sendmail: fatal: ..." and returns status.
func (r *run) fatal(status int, format string, args ...any) int {
	fmt.Fprintf(r.env.Stderr, "%s: fatal: %s\n", r.prog, fmt.Sprintf(format, args...))
	return status
}

// Main is the sendmail command (also reached as mailq and newaliases
// through their own names, which cmd/moat maps to postqueue and postalias).
func Main(env *cli.Env, prog string, args []string) int {
	r := &run{env: env, prog: prog, sub: postdrop.Self()}
	o, err := parseArgs(args)
	if err != nil {
		var u usageError
		if errors.As(err, &u) && string(u) != "usage" {
			return r.fatal(postdrop.ExUsage, "%s", u)
		}
		return r.fatal(postdrop.ExUsage, "usage: %s [options]", prog)
	}
	r.opts = o
	if o.configDir != "" {
		// -C names main.cf or its directory (sendmail(1)).
		if st, err := os.Stat(o.configDir); err == nil && !st.IsDir() {
			o.configDir = filepath.Dir(o.configDir)
		}
	}
	r.dir = env.ConfigDir(o.configDir)
	if o.mode != modeDeliver && o.mode != modeSMTP && o.mode != modeVerify && len(o.recipients) > 0 {
		what := map[byte]string{modeQueue: "display queue mode", modeAliases: "alias initialization mode",
			modeDaemon: "daemon mode", modeFlush: "flush queue mode"}[o.mode]
		if o.flushID != "" {
			what = "flush queue_id"
		} else if o.flushSite != "" {
			what = "flush site"
		}
		return r.fatal(postdrop.ExUsage, "%s requires no recipient", what)
	}
	sub := r.subEnv()
	switch o.mode {
	case modeQueue:
		return postqueue.Main(sub, "postqueue", []string{"-p"})
	case modeAliases:
		return postalias.Newaliases(sub, "newaliases", nil)
	case modeFlush:
		switch {
		case o.flushID != "":
			return postqueue.Main(sub, "postqueue", []string{"-i", o.flushID})
		case o.flushSite != "":
			return postqueue.Main(sub, "postqueue", []string{"-s", o.flushSite})
		}
		return postqueue.Main(sub, "postqueue", []string{"-f"})
	case modeDaemon:
		return r.startDaemon()
	}
	cfg, err := config.Load(r.dir)
	if err != nil {
		return r.fatal(postdrop.ExConfig, "%v", err)
	}
	r.cfg = cfg
	if err := postdrop.Authorize(cfg, r.sub); err != nil {
		return r.fatal(postdrop.Status(err), "%v", err)
	}
	if o.mode == modeSMTP {
		if len(o.recipients) > 0 {
			return r.fatal(postdrop.ExUsage, "stand-alone mode requires no recipient")
		}
		return r.smtp(env.Stdin, env.Stdout)
	}
	return r.deliver()
}

// subEnv is the environment for the commands sendmail runs for the other
// modes: -C becomes their MAIL_CONFIG.
func (r *run) subEnv() *cli.Env {
	e := *r.env
	dir, get := r.dir, r.env.Getenv
	e.Getenv = func(k string) string {
		if k == "MAIL_CONFIG" {
			return dir
		}
		if get == nil {
			return ""
		}
		return get(k)
	}
	return &e
}

// envelope builds the maildrop envelope from the command line.
func (r *run) envelope(rcpts []string) (*maildrop.Envelope, error) {
	o := r.opts
	env := &maildrop.Envelope{
		Sender: o.sender, SenderGiven: o.senderGiven, FullName: o.fullName,
		EnvID: o.envID, Ret: o.ret, Notify: o.notify, Body: o.body, Recipients: rcpts,
	}
	if !o.senderGiven {
		if r.sub.Login == "" {
			return nil, &postdrop.Error{Status: postdrop.ExUnavailable, Msg: fmt.Sprintf("no login name found for user ID %d", r.sub.UID)}
		}
		env.Sender = r.sub.Login
	}
	if !o.fullGiven && r.env.Getenv != nil {
		env.FullName = strings.TrimSpace(r.env.Getenv("NAME"))
	}
	if !o.fullGiven && env.FullName == "" && !o.senderGiven {
		// Postfix's sendmail falls back to the passwd entry's GECOS name
		// (its fullname()), up to the first comma.
		if u, err := user.LookupId(strconv.Itoa(r.sub.UID)); err == nil {
			env.FullName, _, _ = strings.Cut(u.Name, ",")
			env.FullName = strings.TrimSpace(env.FullName)
		}
	}
	if env.EnvID != "" && env.Sender == "" {
		return nil, &postdrop.Error{Status: postdrop.ExUsage, Msg: r.sub.Name() + ": -V option requires non-null sender address"}
	}
	if _, ok := maildrop.ParseNotify(env.Notify); !ok {
		return nil, &postdrop.Error{Status: postdrop.ExUsage, Msg: fmt.Sprintf("bad -N option value: %s", env.Notify)}
	}
	if err := env.Validate(); err != nil {
		return nil, &postdrop.Error{Status: postdrop.ExDataErr, Msg: r.sub.Name() + ": " + strings.TrimPrefix(err.Error(), "maildrop: ")}
	}
	return env, nil
}

// sink is where one maildrop stream goes: postdrop.Drop in this process,
// or the postdrop command.
type sink struct {
	w     io.WriteCloser
	wait  func() (int, error) // exit status and error after w is closed
	abort func()
}

// canWrite reports whether this process may write maildrop/ itself: root,
// mail_owner, or whoever owns maildrop/ (moat run without root, as the
// development configuration runs, belongs to the user who started it).
func (r *run) canWrite() bool {
	euid := os.Geteuid()
	if euid == 0 {
		return true
	}
	if uid, ok := r.cfg.MailOwnerUID(); ok && uid == euid {
		return true
	}
	var st syscall.Stat_t
	dir := filepath.Join(r.cfg.Get("queue_directory"), queue.Maildrop)
	return syscall.Stat(dir, &st) == nil && int(st.Uid) == euid
}

// open starts a maildrop stream.
func (r *run) open() (*sink, error) {
	if r.canWrite() {
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := postdrop.Drop(r.cfg, r.sub, pr)
			pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
			done <- err
		}()
		return &sink{
			w: pw,
			wait: func() (int, error) {
				err := <-done
				if err != nil {
					return postdrop.Status(err), err
				}
				return 0, nil
			},
			abort: func() { pw.CloseWithError(maildrop.ErrTooBig); <-done },
		}, nil
	}
	path := filepath.Join(r.cfg.Get("command_directory"), "postdrop")
	args := []string{"-r"}
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"MAIL_CONFIG=" + r.dir}
	cmd.Stderr = r.env.Stderr
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, &postdrop.Error{Status: postdrop.ExOSErr, Msg: fmt.Sprintf("%s: unable to execute %s: %v", r.sub.Name(), path, errors.Unwrap(err))}
	}
	return &sink{
		w: w,
		wait: func() (int, error) {
			err := cmd.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				// postdrop has said why on standard error already.
				return ee.ExitCode(), err
			}
			if err != nil {
				return postdrop.ExTempFail, err
			}
			return 0, nil
		},
		abort: func() { cmd.Process.Kill(); w.Close(); cmd.Wait() },
	}, nil
}

// deliver is -bm: read the message, then drop it.
func (r *run) deliver() int {
	o := r.opts
	var rcpts []string
	for _, a := range o.recipients {
		rcpts = append(rcpts, Addresses(a)...)
	}
	if !o.extract && len(rcpts) == 0 {
		return r.fatal(postdrop.ExUsage, "%s: Recipient addresses must be specified on the command line or via the -t option", r.sub.Name())
	}
	if o.mode == modeVerify {
		return r.verify(rcpts)
	}
	limit, err := r.cfg.Size("message_size_limit")
	if err != nil {
		return r.fatal(postdrop.ExConfig, "%v", err)
	}
	m := &reader{in: bufio.NewReaderSize(r.env.Stdin, 64*1024), dotEnds: o.dotEnds, limit: limit}
	hdr, err := m.readHeader()
	if err != nil {
		return r.readFailed(err)
	}
	if o.extract {
		rcpts = append(rcpts, extract(hdr)...)
		if len(rcpts) == 0 {
			return r.fatal(postdrop.ExUsage, "%s: No recipient addresses found in message header", r.sub.Name())
		}
	}
	env, err := r.envelope(rcpts)
	if err != nil {
		return r.fatal(postdrop.Status(err), "%v", err)
	}
	s, err := r.open()
	if err != nil {
		return r.fatal(postdrop.Status(err), "%v", err)
	}
	mw, err := maildrop.NewWriter(s.w, env, limit)
	if err == nil {
		if _, err = mw.Write(hdr); err == nil {
			err = m.copyBody(mw)
		}
	}
	if err == nil {
		err = mw.Close()
	}
	var re *readError
	if err != nil && (errors.Is(err, maildrop.ErrTooBig) || errors.As(err, &re)) {
		s.abort()
		return r.readFailed(err)
	}
	if err != nil {
		// The reader went away (postdrop refused the stream and said
		// why): its verdict is the one to report.
		s.w.Close()
		if status := r.finish(s); status != 0 {
			return status
		}
		return r.readFailed(err)
	}
	s.w.Close()
	return r.finish(s)
}

// finish waits for the stream's reader and returns its exit status. An
// exec'd postdrop has printed its own reason; an in-process one's is
// printed here.
func (r *run) finish(s *sink) int {
	status, err := s.wait()
	if status != 0 && r.canWrite() {
		return r.fatal(status, "%v", err)
	}
	return status
}

// readFailed reports an error reading the message or writing it on.
func (r *run) readFailed(err error) int {
	if errors.Is(err, maildrop.ErrTooBig) {
		return r.fatal(postdrop.ExDataErr, "%s: message file too big", r.sub.Name())
	}
	var re *readError
	if errors.As(err, &re) {
		return r.fatal(postdrop.ExIOErr, "%s: error reading input: %v", r.sub.Name(), re.err)
	}
	return r.fatal(postdrop.ExTempFail, "%s: error writing queue file: %v", r.sub.Name(), err)
}

// startDaemon is -bd: Postfix's sendmail executes "postfix start"; so
// does this one, from command_directory.
func (r *run) startDaemon() int {
	cfg, err := config.Load(r.dir)
	if err != nil {
		return r.fatal(postdrop.ExConfig, "%v", err)
	}
	path := filepath.Join(cfg.Get("command_directory"), "postfix")
	cmd := exec.Command(path, "start")
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+r.dir)
	cmd.Stdout, cmd.Stderr = r.env.Stdout, r.env.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		return r.fatal(postdrop.ExOSErr, "%s: unable to execute %s: %v", r.sub.Name(), path, err)
	}
	return 0
}
