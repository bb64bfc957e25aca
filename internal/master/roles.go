package master

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"moat/internal/mastercf"
	"moat/internal/privsep"
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
	case "smtpd", "qmgr", "anvil", "proxymap", "pickup", "local":
		// local is the root executor of the delivery agents' privileged
		// half (asuser.Serve); their unprivileged half runs in qmgr.
		return roleKind{run: true}, true
	case "oqmgr":
		return roleKind{into: "qmgr"}, true
	case "cleanup", "trivial-rewrite":
		return roleKind{into: "smtpd"}, true
	case "discard", "error", "bounce", "retry":
		return roleKind{into: "qmgr"}, true
	case "smtp", "lmtp", "virtual", "pipe", "spawn":
		// delivery agents run inside the queue manager (their privileged
		// half in the local executor)
		return roleKind{into: "qmgr"}, true
	case "scache":
		return roleKind{into: "the smtp and lmtp agents' own connection cache"}, true
	case "postlogd":
		return roleKind{into: "every daemon's own log writer"}, true
	case "tlsmgr", "verify", "flush",
		"showq", "postscreen", "dnsblog", "tlsproxy":
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
		// The local row is moat's delivery executor: unprivileged, it
		// could not take each recipient's identity and would write every
		// mailbox as mail_owner (Postfix's local(8) fails the same way).
		if s.Command == "local" && s.Unpriv == "y" && os.Geteuid() == 0 {
			errs = append(errs, fmt.Errorf("%s, line %d: service %s/%s: the local delivery service must run as root (unpriv column n, as in the stock master.cf): it writes each mailbox with the recipient's identity", mpath, s.Line, s.Name, s.Type))
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
		case r.run && m.opts.Children:
			// It runs as its own child; nothing to explain.
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
	if err := os.Chmod(p, 0o620); err != nil {
		return fmt.Errorf("chmod %s: %w", p, err)
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

// roleRows finds the master.cf rows whose commands moat runs as role
// children, first row per command.
func roleRows(snap *snapshot) map[string]*mastercf.Service {
	rows := map[string]*mastercf.Service{}
	for _, s := range snap.skipped {
		if _, ok := rows[s.Command]; !ok {
			rows[s.Command] = s
		}
	}
	return rows
}

// restartRoles (re)starts the role children, before the smtpd children:
// anvil and proxymap (a new one, then the old one stopped: their sockets
// stay bound by the master, so clients wait rather than fail), then the
// queue manager, whose old process is stopped and waited for first,
// because two queue managers would both recover active/ and could deliver
// a message twice. qmgr and anvil run even without a master.cf row, since
// moat's smtpd relies on them; proxymap runs when master.cf has its row.
func (m *master) restartRoles(snap *snapshot) error {
	rows := roleRows(snap)
	owner, _ := snap.cfg.MailOwnerUID()
	var wg sync.WaitGroup
	errs := make([]error, len(m.opts.Roles))
	for i, spec := range m.opts.Roles {
		row := rows[spec.Name]
		if row == nil && !spec.Implicit {
			m.mu.Lock()
			if old := m.roleKids[spec.Name]; old != nil {
				old.stop(syscall.SIGTERM)
				delete(m.roleKids, spec.Name)
				m.retiredKids = append(m.retiredKids, old)
			}
			m.mu.Unlock()
			continue
		}
		key, unpriv, chroot, wakeup := spec.Name+"/unix", "-", "n", 0
		if row != nil {
			key, unpriv, chroot = row.Name+"/"+row.Type, row.Unpriv, row.Chroot
			if n, err := strconv.Atoi(trimQ(row.Wakeup)); err == nil {
				wakeup = n
			}
		} else if !m.noRowLogged[spec.Name] {
			m.noRowLogged[spec.Name] = true
			m.log.Info("master.cf has no %s service: running it with the default settings", spec.Name)
		}
		switch spec.Name {
		case "qmgr":
			// The queue manager reads queue files the Internet-facing
			// smtpd wrote and runs the lmtp client: it is never root,
			// whatever its row says (Postfix's qmgr(8) runs as
			// mail_owner). Its agents' work that needs root (writing as
			// the recipient) is the local executor's.
			unpriv = "y"
			m.setWakeup(time.Duration(wakeup) * time.Second)
		case "local":
			if row == nil {
				// Without a row, as the stock one says (local unix - n
				// n - - local): root, unjailed, as local(8) must be to
				// write as each recipient.
				unpriv = "n"
			}
		}
		var files []*os.File
		var listen []string
		if spec.Socket {
			l, err := m.privateSocket(snap.queueDir, socketDir(row), spec.Name, owner)
			if err != nil {
				return err
			}
			f, err := l.file()
			if err != nil {
				return err
			}
			files, listen = []*os.File{f}, []string{l.ep.Key()}
		}
		args := m.childArgs(snap, key, unpriv, chroot, listen, "")
		args = append(args, "-r", spec.Name)
		k := newKid(key, m.daemonPath(snap, spec.Name), args, files)
		m.mu.Lock()
		old := m.roleKids[spec.Name]
		m.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if old != nil && spec.Name == "qmgr" {
				old.stop(syscall.SIGTERM)
				select {
				case <-old.done:
				case <-time.After(m.opts.StopTimeout + 5*time.Second):
					m.log.Warning("the previous %s (pid %d) did not stop in time", spec.Name, old.pid())
				}
			}
			if errs[i] = m.startKid(k); errs[i] != nil {
				return
			}
			m.mu.Lock()
			m.roleKids[spec.Name] = k
			if old != nil {
				old.stop(syscall.SIGTERM)
				m.retiredKids = append(m.retiredKids, old)
			}
			m.mu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// prepareRoles, before any child starts, refreshes the jail's copies of
// the host's resolver files when a service is jailed (privsep.PrepareJail,
// at start and at every reload) and binds the private sockets of the role
// services that will run, so that smtpd children are told where they are.
func (m *master) prepareRoles(snap *snapshot) error {
	if os.Geteuid() == 0 {
		for _, s := range snap.inet {
			if yesNo(s.row.Chroot, false) == "y" {
				if err := privsep.PrepareJail(snap.queueDir); err != nil {
					return fmt.Errorf("prepare the chroot jail: %w", err)
				}
				break
			}
		}
	}
	rows := roleRows(snap)
	owner, _ := snap.cfg.MailOwnerUID()
	sockets := map[string]string{}
	for _, spec := range m.opts.Roles {
		if !spec.Socket || (rows[spec.Name] == nil && !spec.Implicit) {
			continue
		}
		l, err := m.privateSocket(snap.queueDir, socketDir(rows[spec.Name]), spec.Name, owner)
		if err != nil {
			return err
		}
		sockets[spec.Name] = l.ep.Addr
	}
	for name, l := range m.unixLns {
		if sockets[filepath.Base(name)] != name {
			// No longer configured: its child is stopped by
			// restartRoles; clients fall back (anvil fails open,
			// proxy: tables fail closed).
			l.close()
			delete(m.unixLns, name)
		}
	}
	m.sockets = sockets
	return nil
}

// socketDir is where master(5)'s private column puts a service's socket:
// private/ (y, the default) or public/ (n).
func socketDir(row *mastercf.Service) string {
	if row != nil && row.Private == "n" {
		return "public"
	}
	return "private"
}

// privateSocket is the UNIX socket SUB/NAME (private/anvil) that a role
// child serves: bound once by the master (root), given to mail_owner, and
// kept across reloads and restarts so that clients never find it missing.
func (m *master) privateSocket(qdir, sub, name string, owner int) (*listener, error) {
	rel := sub + "/" + name
	if l, ok := m.unixLns[rel]; ok {
		return l, nil
	}
	dir := filepath.Join(qdir, sub)
	if err := os.Mkdir(dir, 0o700); err == nil {
		if os.Geteuid() == 0 {
			if err := os.Lchown(dir, owner, -1); err != nil {
				return nil, fmt.Errorf("chown %s: %w", dir, err)
			}
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	p := filepath.Join(dir, name)
	// A socket left by a master that crashed.
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSocket != 0 {
		os.Remove(p)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", name, err)
	}
	if err := os.Chmod(p, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", p, err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(p, owner, -1); err != nil {
			ln.Close()
			return nil, fmt.Errorf("chown %s: %w", p, err)
		}
	}
	l := &listener{ep: endpoint{Network: "unix", Addr: rel}, ln: ln, stop: make(chan struct{})}
	m.unixLns[rel] = l
	return l, nil
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
