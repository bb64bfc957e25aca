package master

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ChildVerb is the hidden cmd/moat verb that runs one master.cf service
// as a child of the master (master(8) runs each service's command; moat
// re-executes its own binary with this verb instead).
const ChildVerb = "master-child"

// Child descriptors: fd 3 is the readiness pipe, fd 4 onwards the
// inherited listeners, in the order of the -l arguments.
const (
	childReadyFD  = 3
	childFirstLFD = 4
)

// childStartTimeout bounds how long the master waits for a child to say
// it is ready (tables opened, privileges dropped).
const childStartTimeout = 30 * time.Second

// Restart back-off for a child that exits unexpectedly: master(8)
// throttles a service whose process dies at start-up; moat doubles the
// delay from one second up to a minute, so a broken service never spins.
const (
	minRestartDelay = time.Second
	maxRestartDelay = 60 * time.Second
	// quickDeath is how soon after start an exit counts as "bad command
	// startup" (it never got to serve).
	quickDeath = 10 * time.Second
	// keepsDying is how many consecutive quick deaths make the master
	// log at fatal level.
	keepsDying = 5
)

// kid is one child process slot: a service of one configuration
// generation, restarted by its supervisor until it is retired.
type kid struct {
	key   string // "smtp/inet", "qmgr/unix"
	path  string // $daemon_directory/COMMAND, as master(8) names the process
	args  []string
	files []*os.File // listeners, passed as fd 4...

	mu      sync.Mutex
	proc    *os.Process
	retired bool
	sig     syscall.Signal
	retire  chan struct{}
	done    chan struct{} // closed when the supervisor returns
}

func newKid(key, path string, args []string, files []*os.File) *kid {
	return &kid{key: key, path: path, args: args, files: files, retire: make(chan struct{}), done: make(chan struct{})}
}

// stop retires the slot: no restart, and sig to the running process
// (SIGUSR1: stop accepting and finish the sessions; SIGTERM: stop now).
func (k *kid) stop(sig syscall.Signal) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.retired {
		k.retired = true
		close(k.retire)
	}
	k.sig = sig
	if k.proc != nil {
		k.proc.Signal(sig)
	}
}

// setProc records a fresh process, and passes on a retirement that came
// while it was starting.
func (k *kid) setProc(p *os.Process) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.proc = p
	if k.retired && p != nil {
		p.Signal(k.sig)
	}
}

func (k *kid) isRetired() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.retired
}

func (k *kid) pid() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.proc == nil {
		return 0
	}
	return k.proc.Pid
}

// spawn starts k's process and waits, bounded, for it to report ready or
// why it could not start.
func (m *master) spawn(k *kid) (*exec.Cmd, error) {
	exe := m.opts.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("cannot find the moat binary: %w", err)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	defer r.Close()
	cmd := &exec.Cmd{
		Path: exe, Args: append([]string{"moat", ChildVerb}, k.args...), Dir: m.cwd,
		Env: os.Environ(), Stdout: os.Stderr, Stderr: os.Stderr,
		ExtraFiles: append([]*os.File{w}, k.files...),
		// A child whose master dies is killed by the kernel, so a master
		// restarted after a crash can bind its ports at once; the queue's
		// crash safety covers the sessions cut short. (The child stays in
		// the master's process group: a terminal's ^C reaches it too.)
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("service %s: start: %w", k.key, err)
	}
	w.Close()
	r.SetReadDeadline(time.Now().Add(childStartTimeout))
	line, rerr := bufio.NewReader(r).ReadString('\n')
	if strings.TrimSpace(line) == "ready" {
		return cmd, nil
	}
	cmd.Process.Kill()
	cmd.Wait()
	rest, _ := readRest(r)
	msg := strings.TrimSpace(line + rest)
	if msg == "" {
		if rerr == nil {
			rerr = errors.New("no reason given")
		}
		msg = fmt.Sprintf("exited before it was ready (%v): %s", rerr, exitText(cmd.ProcessState))
	}
	return nil, fmt.Errorf("service %s: %s", k.key, msg)
}

func readRest(r *os.File) (string, error) {
	var b strings.Builder
	buf := make([]byte, 4096)
	for b.Len() < 64<<10 {
		n, err := r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String(), err
		}
	}
	return b.String(), nil
}

// exitText is master(8)'s wording for how a child ended.
func exitText(ps *os.ProcessState) string {
	if ps == nil {
		return "unknown status"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d", int(ws.Signal()))
	}
	return fmt.Sprintf("exit status %d", ps.ExitCode())
}

// supervise waits for k's process and restarts it, with back-off, until
// k is retired.
func (m *master) supervise(k *kid, cmd *exec.Cmd) {
	defer close(k.done)
	delay := minRestartDelay
	quick := 0
	for {
		started := time.Now()
		pid := cmd.Process.Pid
		cmd.Wait()
		if k.isRetired() {
			return
		}
		// master_spawn.c's words, then master_status.c's for a child that
		// died before it could serve.
		m.log.Warning("process %s pid %d %s", k.path, pid, exitText(cmd.ProcessState))
		if time.Since(started) < quickDeath {
			quick++
			m.log.Warning("%s: bad command startup -- throttling", k.path)
		} else {
			quick, delay = 0, minRestartDelay
		}
		for {
			if quick >= keepsDying {
				m.log.Fatal("service %s: its process died %d times in a row; restarting it every %v until it stays up", k.key, quick, delay)
			}
			select {
			case <-time.After(delay):
			case <-k.retire:
				return
			}
			delay = min(2*delay, maxRestartDelay)
			var err error
			if cmd, err = m.spawn(k); err == nil {
				k.setProc(cmd.Process)
				break
			}
			quick++
			m.log.Warning("%v", err)
		}
	}
}

// startKid spawns k and supervises it; the error is a start-up failure.
func (m *master) startKid(k *kid) error {
	cmd, err := m.spawn(k)
	if err != nil {
		return err
	}
	k.setProc(cmd.Process)
	m.kidsWG.Add(1)
	go func() {
		defer m.kidsWG.Done()
		m.supervise(k, cmd)
	}()
	return nil
}

// applyChildren is apply for a master that runs services as children:
// it binds what is new, starts the new generation's children on the
// listeners and, only once every one of them is ready, retires the old
// generation (which stops accepting and finishes its sessions), so a
// reload loses no connection and a failed reload changes nothing.
func (m *master) applyChildren(snap *snapshot) error {
	m.mu.Lock()
	keep, fresh, err := m.bindAll(snap)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	if err := m.prepareRoles(snap); err != nil {
		return err
	}
	m.gen++
	// The services smtpd relies on come first, so that a client greeted
	// by a new smtpd finds them up.
	if err := m.restartRoles(snap); err != nil {
		for _, l := range fresh {
			l.ln.Close()
		}
		return err
	}
	var started []*kid
	fail := func(err error) error {
		for _, k := range started {
			k.stop(syscall.SIGTERM)
		}
		for _, l := range fresh {
			l.ln.Close()
		}
		return err
	}
	kids := map[string]*kid{}
	for _, spec := range snap.inet {
		var files []*os.File
		var keys []string
		for _, ep := range spec.eps {
			f, err := keep[ep.Key()].file()
			if err != nil {
				return fail(fmt.Errorf("master.cf, line %d: service %s: %w", spec.row.Line, spec.key, err))
			}
			files = append(files, f)
			keys = append(keys, ep.Key())
		}
		kids[spec.key] = newKid(spec.key, m.daemonPath(snap, spec.row.Command), m.childArgs(snap, spec.key, spec.row.Unpriv, spec.row.Chroot, keys, spec.internal), files)
	}
	// The children start in parallel: a reload's pause is one child's
	// start-up, not the sum of them.
	errs := make([]error, len(snap.inet))
	var wg sync.WaitGroup
	for i, spec := range snap.inet {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.startKid(kids[spec.key])
		}()
	}
	wg.Wait()
	for i, spec := range snap.inet {
		if errs[i] == nil {
			started = append(started, kids[spec.key])
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}

	m.mu.Lock()
	var dropped []*listener
	for key, l := range m.listeners {
		if _, ok := keep[key]; !ok {
			dropped = append(dropped, l)
		}
	}
	for _, spec := range snap.inet {
		for _, ep := range spec.eps {
			keep[ep.Key()].cur.Store(&service{spec: spec})
		}
	}
	old := m.kids
	m.listeners, m.kids = keep, kids
	var still []*kid
	for _, k := range m.retiredKids {
		select {
		case <-k.done:
		default:
			still = append(still, k)
		}
	}
	for _, k := range old {
		still = append(still, k)
	}
	m.retiredKids = still
	m.mu.Unlock()
	for _, k := range old {
		k.stop(syscall.SIGUSR1)
	}
	if len(dropped) > 0 {
		// A socket no longer configured closes once the old children,
		// which may be restarting with it, are gone.
		go func() {
			for _, k := range old {
				<-k.done
			}
			for _, l := range dropped {
				l.close()
			}
		}()
	}
	return nil
}

// bindAll returns the listener set snap needs: the ones already bound
// and kept, plus fresh ones. Called with m.mu held.
func (m *master) bindAll(snap *snapshot) (keep map[string]*listener, fresh []*listener, err error) {
	keep = map[string]*listener{}
	for _, spec := range snap.inet {
		for _, ep := range spec.eps {
			if l, ok := m.listeners[ep.Key()]; ok {
				keep[ep.Key()] = l
				continue
			}
			ln, err := m.listen(ep)
			if err != nil {
				for _, l := range fresh {
					l.ln.Close()
				}
				return nil, nil, fmt.Errorf("master.cf, line %d: service %s: %w", spec.row.Line, spec.key, err)
			}
			l := &listener{ep: ep, ln: ln, stop: make(chan struct{})}
			fresh = append(fresh, l)
			keep[ep.Key()] = l
		}
	}
	return keep, fresh, nil
}

// file returns the listener's socket as a file to pass to a child, made
// once and kept, since every generation's child gets the same socket.
func (l *listener) file() (*os.File, error) {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	if l.f != nil {
		return l.f, nil
	}
	fl, ok := l.ln.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, fmt.Errorf("listener %s cannot be passed to a child", l.ep.Addr)
	}
	f, err := fl.File()
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", l.ep.Addr, err)
	}
	l.f = f
	return f, nil
}

// daemonPath is how master(8) names a service's process in its warnings:
// $daemon_directory/COMMAND.
func (m *master) daemonPath(snap *snapshot, command string) string {
	return filepath.Join(snap.cfg.Get("daemon_directory"), command)
}

// childArgs is a child's command line after the verb: where the
// configuration is, which service it runs, and the identity and jail the
// master chose for it.
func (m *master) childArgs(snap *snapshot, key, unpriv, chroot string, listen []string, internal string) []string {
	args := []string{"-c", m.dir, "-d", m.cwd, "-s", key, "-g", fmt.Sprint(m.gen), "-u", yesNo(unpriv, true), "-j", yesNo(chroot, false)}
	if internal != "" {
		args = append(args, "-i", internal)
	}
	for _, l := range listen {
		args = append(args, "-l", l)
	}
	if m.opts.Stderr {
		args = append(args, "-e")
	}
	if m.opts.SyslogPath != "" {
		args = append(args, "-S", m.opts.SyslogPath)
	}
	for name, p := range m.sockets {
		args = append(args, "-p", name+"="+p)
	}
	return args
}

// yesNo resolves a master.cf y/n column: "-" is the default (master(5):
// unpriv y, chroot n since Postfix 3.0).
func yesNo(col string, def bool) string {
	v := def
	switch col {
	case "y":
		v = true
	case "n":
		v = false
	}
	if v {
		return "y"
	}
	return "n"
}

// stopKids stops every child: SIGTERM (sessions cancelled), bounded by
// StopTimeout plus a margin, then SIGKILL.
func (m *master) stopKids() {
	m.mu.Lock()
	var all []*kid
	for _, k := range m.kids {
		all = append(all, k)
	}
	all = append(all, m.retiredKids...)
	for _, k := range m.roleKids {
		all = append(all, k)
	}
	m.mu.Unlock()
	for _, k := range all {
		k.stop(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() { m.kidsWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(m.opts.StopTimeout + 5*time.Second):
		for _, k := range all {
			if p := k.pid(); p > 0 {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
		m.log.Warning("children did not stop within %v: killed", m.opts.StopTimeout+5*time.Second)
		waitTimeout(&m.kidsWG, 2*time.Second)
	}
	for _, l := range m.unixLns {
		l.close()
	}
}
