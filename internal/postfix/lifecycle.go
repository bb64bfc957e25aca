package postfix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"moat/internal/cli"
	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/master"
)

// readyFDEnv names the inherited descriptor of the readiness pipe through
// which a master started by `postfix start` says "ready" (its listeners are
// bound and its PID file is written) or why it could not start. Its
// presence is also what tells `start-fg` that it runs detached.
const readyFDEnv = "MOAT_MASTER_READY_FD"

// Bounds on waiting for a master, so start and stop never hang a script.
const (
	startTimeout = 10 * time.Second
	// stopWait covers the master's own bound on draining sessions
	// (master.DefaultStopTimeout) plus its final steps; postfix-script
	// then stops it "with force".
	stopWait = master.DefaultStopTimeout + 5*time.Second
)

// script prints postfix-script's messages: on stderr as "TAG: text" (TAG
// is "$syslog_name/postfix-script"), and to the mail log as postlog(1)
// does for the script, so admins and scripts that grep either keep
// working.
type script struct {
	env *cli.Env
	tag string
	log *maillog.Logger
}

func newScript(env *cli.Env, cfg *config.Config) *script {
	s := &script{env: env, tag: "postfix/postfix-script"}
	if cfg == nil {
		return s
	}
	if n := cfg.Get("syslog_name"); n != "" {
		s.tag = n + "/postfix-script"
	}
	// Log only to a real sink: with neither a maillog_file nor a syslog
	// socket, maillog would fall back to standard error and repeat each
	// line the admin already sees.
	file := cfg.Get("maillog_file")
	if file == "/dev/stderr" || file == "/dev/stdout" {
		return s
	}
	if file == "" {
		if _, err := os.Stat(maillog.DefaultSyslogPath); err != nil {
			return s
		}
	}
	if l, err := maillog.FromConfig(cfg, maillog.Setup{Daemon: "postfix-script"}); err == nil {
		s.log = l
	}
	return s
}

func (s *script) info(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(s.env.Stderr, "%s: %s\n", s.tag, msg)
	if s.log != nil {
		s.log.Info("%s", msg)
	}
}

func (s *script) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(s.env.Stderr, "%s: warning: %s\n", s.tag, msg)
	if s.log != nil {
		s.log.Warning("%s", msg)
	}
}

// fatal prints a fatal message and returns exit status 1.
func (s *script) fatal(format string, args ...any) int {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(s.env.Stderr, "%s: fatal: %s\n", s.tag, msg)
	if s.log != nil {
		s.log.Fatal("%s", msg)
	}
	return 1
}

func (s *script) close() {
	if s.log != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.log.Close(ctx)
	}
}

// lifecycle runs start, start-fg, stop, status and reload (postfix(1)).
func lifecycle(env *cli.Env, prog, cdir, cmd string) int {
	dir := env.ConfigDir(cdir)
	cwd, err := os.Getwd()
	if err != nil {
		return env.Fatalf(prog, "getcwd: %v", err)
	}
	if cmd == "start-fg" && env.Getenv != nil && env.Getenv(readyFDEnv) != "" {
		return runDetached(env, dir, cwd)
	}
	// config.Open, not Load: stop and status must work even when main.cf
	// was broken after start; start's check and the master are strict.
	cfg, err := config.Open(dir)
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	s := newScript(env, cfg)
	defer s.close()
	pidPath, err := pidPath(cfg, cwd)
	if err != nil {
		return s.fatal("%v", err)
	}
	pid, running, serr := master.Status(pidPath)
	if serr != nil && running {
		return s.fatal("%v", serr)
	}
	switch cmd {
	case "status":
		if !running {
			s.info("the Postfix mail system is not running")
			return 1
		}
		s.info("the Postfix mail system is running: PID: %d", pid)
		return 0
	case "stop":
		if !running {
			return s.fatal("the Postfix mail system is not running")
		}
		s.info("stopping the Postfix mail system")
		return stop(s, pidPath, pid)
	case "reload":
		if !running {
			return s.fatal("the Postfix mail system is not running")
		}
		s.info("refreshing the Postfix mail system")
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return s.fatal("kill -HUP %d: %v", pid, err)
		}
		return 0
	case "start":
		if running {
			return s.fatal("the Postfix mail system is already running")
		}
		// postfix-script runs its fatal checks before every start.
		if Report(env, prog, Check(dir, Options{Dir: cwd})) != 0 {
			return s.fatal("Postfix integrity check failed!")
		}
		s.info("starting the Postfix mail system")
		return startDetached(s, dir, cwd)
	case "start-fg":
		if running {
			return s.fatal("the Postfix mail system is already running")
		}
		s.info("starting the Postfix mail system")
		return runForeground(env, s, dir, cwd)
	}
	return env.Fatalf(prog, "%s: not available yet in this version of moat", cmd)
}

// pidPath is $queue_directory/pid/master.pid, a relative queue_directory
// taken from the current directory as the master takes it.
func pidPath(cfg *config.Config, cwd string) (string, error) {
	q, err := cfg.GetErr("queue_directory")
	if err != nil {
		return "", err
	}
	if q == "" {
		return "", fmt.Errorf("file %s: parameter queue_directory is empty", cfg.Path)
	}
	if !filepath.IsAbs(q) {
		q = filepath.Join(cwd, q)
	}
	return filepath.Join(q, master.PIDFile), nil
}

// masterOptions are the master's options common to both ways of running
// it.
func masterOptions(dir, cwd string) master.Options {
	return master.Options{
		ConfigDir: dir, Dir: cwd, Servers: servers(), Roles: roles(), Signals: true,
		Children: true,
	}
}

// runForeground is `postfix start-fg` (postfix(1)): the master in this
// process, logging to standard error unless maillog_file says otherwise,
// until SIGTERM or SIGINT; exit status 0 after a clean stop.
func runForeground(env *cli.Env, s *script, dir, cwd string) int {
	opts := masterOptions(dir, cwd)
	opts.Stderr = true
	if err := master.Run(context.Background(), opts); err != nil {
		if errors.Is(err, master.ErrRunning) {
			return s.fatal("the Postfix mail system is already running")
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(env.Stderr, "%s: fatal: %s\n", masterTag(s), line)
		}
		return 1
	}
	return 0
}

func masterTag(s *script) string {
	return strings.TrimSuffix(s.tag, "postfix-script") + "master"
}

// runDetached is the master `postfix start` started: it reports readiness
// (or its start-up error) on the inherited pipe, then serves.
func runDetached(env *cli.Env, dir, cwd string) int {
	fd, err := strconv.Atoi(env.Getenv(readyFDEnv))
	if err != nil || fd < 3 {
		return env.Fatalf("postfix", "%s: bad descriptor %q", readyFDEnv, env.Getenv(readyFDEnv))
	}
	os.Unsetenv(readyFDEnv)
	ready := os.NewFile(uintptr(fd), "ready")
	opts := masterOptions(dir, cwd)
	opts.Notify = func(e master.Event) {
		if e.Kind == master.Ready && ready != nil {
			io.WriteString(ready, "ready\n")
			ready.Close()
			ready = nil
		}
	}
	err = master.Run(context.Background(), opts)
	if err != nil && ready != nil {
		io.WriteString(ready, err.Error()+"\n")
		ready.Close()
	}
	if err != nil {
		return 1
	}
	return 0
}

// startDetached re-executes this binary as a detached master (its own
// session, standard streams on /dev/null) and waits, bounded, until it
// says it is ready, so that `postfix start && swaks ...` works.
func startDetached(s *script, dir, cwd string) int {
	exe, err := os.Executable()
	if err != nil {
		return s.fatal("cannot find the moat binary: %v", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return s.fatal("%v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return s.fatal("pipe: %v", err)
	}
	defer r.Close()
	// argv[0] "moat" makes cmd/moat dispatch on the verb, whatever link
	// name the binary was started through.
	cmd := &exec.Cmd{
		Path: exe, Args: []string{"moat", "postfix", "-c", dir, "start-fg"}, Dir: cwd,
		Env:         append(os.Environ(), readyFDEnv+"=3"),
		ExtraFiles:  []*os.File{w},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return s.fatal("cannot start the master: %v", err)
	}
	w.Close()
	r.SetReadDeadline(time.Now().Add(startTimeout))
	out, rerr := io.ReadAll(io.LimitReader(r, 64<<10))
	msg := strings.TrimSpace(string(out))
	if msg == "ready" {
		cmd.Process.Release()
		return 0
	}
	if rerr != nil {
		// Not ready in time. Killing it could cut short a long recovery of
		// a large queue, so it is left to finish and the admin told.
		cmd.Process.Release()
		s.warn("the master (PID %d) is not ready after %v; it keeps starting: see the mail log, and `postfix status`", cmd.Process.Pid, startTimeout)
		return 1
	}
	cmd.Wait() // it closed the pipe because it is exiting
	for _, line := range strings.Split(msg, "\n") {
		if line != "" {
			fmt.Fprintf(s.env.Stderr, "%s: fatal: %s\n", masterTag(s), line)
		}
	}
	return s.fatal("mail system startup failed")
}

// stop waits, bounded, for the master to release its PID file after
// SIGTERM, saying so every second as postfix-script does, and kills it if
// it will not stop.
func stop(s *script, pidPath string, pid int) int {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return s.fatal("kill %d: %v", pid, err)
	}
	deadline := time.Now().Add(stopWait)
	next := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if _, running, _ := master.Status(pidPath); !running {
			return 0
		}
		if time.Now().After(next) {
			s.info("waiting for the Postfix mail system to terminate")
			next = next.Add(time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.warn("stopping the Postfix mail system with force")
	syscall.Kill(pid, syscall.SIGKILL)
	return 0
}
