package master

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"moat/internal/mastercf"
)

// QmgrFIFO is the queue manager's trigger, under queue_directory, as in
// Postfix (qmgr(8): "public/qmgr"): a FIFO to which smtpd writes one
// request byte after each commit, and postqueue -f may too.
const QmgrFIFO = "public/qmgr"

// Postfix's qmgr trigger requests (mail_proto.h QMGR_REQ_*): every one of
// them makes moat's queue manager scan now.
const (
	TriggerIncoming = 'I'
	TriggerDeferred = 'D'
	TriggerWakeup   = 'W' // master.cf wakeup timer (master(8) writes a byte too)
)

// role says what moat does with a master.cf command.
type roleKind struct {
	run  bool   // moat runs it as its own child process
	into string // else the role that does its work ("" = not run yet)
}

// roleOf maps master.cf commands (master(5), Debian's and upstream's stock
// master.cf) to moat's processes. A command not listed is an error that
// names its line, so a typo is not silently ignored.
func roleOf(command string) (roleKind, bool) {
	switch command {
	case "smtpd", "qmgr":
		return roleKind{run: true}, true
	case "oqmgr":
		return roleKind{into: "qmgr"}, true
	case "cleanup", "trivial-rewrite":
		return roleKind{into: "smtpd"}, true
	case "local", "discard", "error", "bounce", "retry":
		return roleKind{into: "qmgr"}, true
	case "postlogd":
		return roleKind{into: "every daemon's own log writer"}, true
	case "pickup", "tlsmgr", "verify", "flush", "proxymap", "anvil", "scache",
		"showq", "smtp", "lmtp", "virtual", "pipe", "spawn", "postscreen",
		"dnsblog", "tlsproxy":
		return roleKind{}, true
	}
	return roleKind{}, false
}

// checkCommands refuses master.cf rows whose command moat does not know.
func checkCommands(mpath string, mf *mastercf.File) error {
	var errs []error
	for _, s := range mf.Services {
		if _, ok := roleOf(s.Command); !ok {
			errs = append(errs, fmt.Errorf("%s, line %d: service %s/%s: unknown command %q (moat runs smtpd and qmgr, and folds or defers Postfix's other daemons)", mpath, s.Line, s.Name, s.Type, s.Command))
		}
	}
	return errors.Join(errs...)
}

// logServices names, once per command, how moat runs each master.cf
// service that is not an inet smtpd: run as a child, folded into another
// role, or not run yet.
func (m *master) logServices(snap *snapshot) {
	seen := map[string]bool{}
	for _, s := range snap.skipped {
		if seen[s.Command] {
			continue
		}
		seen[s.Command] = true
		r, _ := roleOf(s.Command)
		switch {
		case r.run && s.Command == "qmgr" && m.opts.Children:
			// It runs; nothing to explain.
		case r.run:
			m.log.Info("service %s/%s (command %s, master.cf line %d): not run as a separate process by this version of moat", s.Name, s.Type, s.Command, s.Line)
		case r.into != "":
			m.log.Info("service %s/%s (command %s, master.cf line %d) is folded into %s", s.Name, s.Type, s.Command, s.Line, r.into)
		default:
			m.log.Info("service %s/%s (command %s, master.cf line %d): not run yet by this version of moat", s.Name, s.Type, s.Command, s.Line)
		}
	}
}

// openTrigger creates the queue manager's FIFO (owned by mail_owner when
// the master is root, writable by its group only, like Postfix's
// prw--w----) and holds it open for reading and writing, so that a
// writer never fails for want of a reader while the queue manager
// restarts; queued bytes wait for it.
func (m *master) openTrigger(qdir string, owner int) error {
	p := filepath.Join(qdir, QmgrFIFO)
	if err := syscall.Mkfifo(p, 0o620); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", p, err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeNamedPipe == 0 {
		return fmt.Errorf("%s: not a FIFO (remove it and start again)", p)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(p, owner, -1); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	}
	fd, err := syscall.Open(p, syscall.O_RDWR|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	m.fifo = fd
	return nil
}

// OpenTrigger opens the queue manager's FIFO for writing without
// blocking, for a process that wakes it (smtpd, before it drops its
// privileges).
func OpenTrigger(qdir string) (int, error) {
	p := filepath.Join(qdir, QmgrFIFO)
	fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", p, err)
	}
	return fd, nil
}

// Trigger writes one request byte. A full FIFO (EAGAIN) already holds
// wake-ups enough, so it is not an error.
func Trigger(fd int, req byte) {
	if fd >= 0 {
		syscall.Write(fd, []byte{req})
	}
}

// restartQmgr (re)starts the queue manager child: the old one is stopped
// and waited for first, because two queue managers would both recover
// active/ and could deliver a message twice.
func (m *master) restartQmgr(snap *snapshot) error {
	if len(m.opts.Roles) == 0 {
		return nil
	}
	var row, local *mastercf.Service
	for _, s := range snap.skipped {
		switch {
		case s.Command == "qmgr" && row == nil:
			row = s
		case s.Command == "local" && local == nil:
			local = s
		}
	}
	key := "qmgr/unix"
	wakeup := 0
	if row != nil {
		key = row.Name + "/" + row.Type
		w := row.Wakeup
		if n, err := strconv.Atoi(trimQ(w)); err == nil {
			wakeup = n
		}
	}
	// The local delivery agent runs inside the queue manager and writes
	// mailboxes, so the pair runs as root unless master.cf's local row
	// says unpriv y (issue 5 moves local delivery to a root child of its
	// own and lets qmgr drop to mail_owner).
	unpriv := "n"
	if local != nil && local.Unpriv == "y" {
		unpriv = "y"
	}
	if m.qmgr != nil {
		old := m.qmgr
		old.stop(syscall.SIGTERM)
		select {
		case <-old.done:
		case <-time.After(m.opts.StopTimeout + 5*time.Second):
			m.log.Warning("the previous queue manager (pid %d) did not stop in time", old.pid())
		}
	}
	args := m.childArgs(snap, key, unpriv, "n", nil, "")
	args = append(args, "-r", "qmgr")
	k := newKid(key, m.daemonPath(snap, "qmgr"), args, nil)
	if err := m.startKid(k); err != nil {
		return err
	}
	m.mu.Lock()
	m.qmgr = k
	m.mu.Unlock()
	m.setWakeup(time.Duration(wakeup) * time.Second)
	return nil
}

// trimQ drops master(5)'s "?" wakeup suffix (wake only when used).
func trimQ(s string) string {
	if n := len(s); n > 0 && s[n-1] == '?' {
		return s[:n-1]
	}
	return s
}

// setWakeup (re)arms the wakeup column's timer for the queue manager.
func (m *master) setWakeup(d time.Duration) {
	if m.wakeStop != nil {
		close(m.wakeStop)
		m.wakeStop = nil
	}
	if d <= 0 {
		return
	}
	stop := make(chan struct{})
	m.wakeStop = stop
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				Trigger(m.fifo, TriggerWakeup)
			case <-stop:
				return
			}
		}
	}()
}
