package privsep

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrNotRoot is wrapped by Drop's error when the process is not root: only
// a root-started mail system changes identity (postfix(1): the master runs
// as root). A caller started by an unprivileged user for development may
// test for it with errors.Is and carry on as that user, deliberately.
var ErrNotRoot = errors.New("privileges can only be dropped by root")

// Drop makes the calling process a jailed, unprivileged daemon for good:
// chroot into chrootDir when it is not "" (then chdir "/"), setgroups to
// none, setgid, setuid — the order matters: groups and gid can only be
// changed while still root. It then verifies the result from the kernel's
// view: getuid/geteuid/getgid/getegid and the supplementary groups are the
// account's; every thread's /proc status shows the account in all four
// uid and gid slots (real, effective, saved, file system) and empty
// permitted, effective and ambient capability sets; setuid(0) and setgid(0)
// fail; and, when jailed, "/" is chrootDir and is searchable by the
// account.
//
// Before the chroot it refuses to jail a process that holds a directory
// descriptor outside chrootDir: such a descriptor is a way out of any
// chroot (openat relative to it). Descriptors of files (tables, keys,
// the log) are what a daemon should open first and are kept.
//
// Go applies setuid/setgid/setgroups to every thread since Go 1.16, so
// Drop is safe in a process that already runs goroutines; chroot and the
// working directory are per process. Any error means the process may be
// half changed: the caller must exit, never carry on.
func Drop(a Account, chrootDir string) error {
	if a.UID <= 0 || a.GID <= 0 {
		return fmt.Errorf("drop privileges to %q (uid %d, gid %d): refusing a privileged or unset account", a.Name, a.UID, a.GID)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("drop privileges to %s: running as uid %d: %w", a.Name, os.Geteuid(), ErrNotRoot)
	}
	var jail *syscall.Stat_t
	if chrootDir != "" {
		real, st, err := jailDir(chrootDir)
		if err != nil {
			return err
		}
		jail, chrootDir = st, real
	}
	// /proc is outside any jail: keep a descriptor to this process's
	// entry to verify through afterwards. It is closed before returning,
	// so it is no way out of the jail.
	self, err := os.Open("/proc/self")
	if err != nil {
		return fmt.Errorf("drop privileges: need /proc to verify the result: %w", err)
	}
	defer self.Close()
	if jail != nil {
		if err := syscall.Chroot(chrootDir); err != nil {
			return fmt.Errorf("chroot %s: %w", chrootDir, err)
		}
		if err := syscall.Chdir("/"); err != nil {
			return fmt.Errorf("chroot %s: chdir /: %w", chrootDir, err)
		}
	}
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("drop privileges: setgroups: %w", err)
	}
	if err := syscall.Setgid(a.GID); err != nil {
		return fmt.Errorf("drop privileges: setgid %d: %w", a.GID, err)
	}
	if err := syscall.Setuid(a.UID); err != nil {
		return fmt.Errorf("drop privileges: setuid %d: %w", a.UID, err)
	}
	if err := verify(self, a, jail); err != nil {
		return fmt.Errorf("drop privileges to %s: %w", a.Name, err)
	}
	return nil
}

// jailDir resolves and vets a chroot directory: absolute, root's, not
// writable by others, and no directory descriptor held outside it.
func jailDir(dir string) (string, *syscall.Stat_t, error) {
	if !filepath.IsAbs(dir) {
		return "", nil, fmt.Errorf("chroot %s: not an absolute path", dir)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", nil, fmt.Errorf("chroot %s: %w", dir, err)
	}
	if err := checkRootDir(real); err != nil {
		return "", nil, fmt.Errorf("chroot %s: %w", dir, err)
	}
	if err := dirFDsWithin(real); err != nil {
		return "", nil, fmt.Errorf("chroot %s: %w", dir, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(real, &st); err != nil {
		return "", nil, fmt.Errorf("chroot %s: %w", dir, err)
	}
	return real, &st, nil
}

// Jail chroots a process that stays root into chrootDir (then chdir "/"),
// with Drop's checks on the directory: master(5) allows chroot = y with
// unpriv = n. It confines mistakes, not an attacker — root can leave a
// chroot — so moat's own rows jail only unprivileged daemons; this is for
// admins' master.cf rows that ask for it.
func Jail(chrootDir string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("chroot %s: %w", chrootDir, ErrNotRoot)
	}
	real, want, err := jailDir(chrootDir)
	if err != nil {
		return err
	}
	if err := syscall.Chroot(real); err != nil {
		return fmt.Errorf("chroot %s: %w", chrootDir, err)
	}
	if err := syscall.Chdir("/"); err != nil {
		return fmt.Errorf("chroot %s: chdir /: %w", chrootDir, err)
	}
	var root syscall.Stat_t
	if err := syscall.Stat("/", &root); err != nil || root.Dev != want.Dev || root.Ino != want.Ino {
		return fmt.Errorf("chroot %s: / is not the jail directory afterwards (%v)", chrootDir, err)
	}
	return nil
}

// xOK is access(2)'s X_OK, which package syscall does not name on Linux.
const xOK = 1

// verify checks the dropped identity; see Drop.
func verify(self *os.File, a Account, jail *syscall.Stat_t) error {
	if u, eu, g, eg := syscall.Getuid(), syscall.Geteuid(), syscall.Getgid(), syscall.Getegid(); u != a.UID || eu != a.UID || g != a.GID || eg != a.GID {
		return fmt.Errorf("uid %d euid %d gid %d egid %d after the change, want uid %d gid %d", u, eu, g, eg, a.UID, a.GID)
	}
	if gs, err := syscall.Getgroups(); err != nil || len(gs) != 0 {
		return fmt.Errorf("supplementary groups %v remain (%v)", gs, err)
	}
	n, err := verifyThreads(self, a)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("no threads found in /proc/self/task")
	}
	// The kernel must refuse the way back. A success here means the
	// process is root again; the caller exits on this error.
	if err := syscall.Setuid(0); err == nil {
		return errors.New("setuid(0) succeeded after dropping privileges")
	}
	if err := syscall.Setgid(0); err == nil {
		return errors.New("setgid(0) succeeded after dropping privileges")
	}
	if jail != nil {
		var root syscall.Stat_t
		if err := syscall.Stat("/", &root); err != nil {
			return fmt.Errorf("stat / in the jail: %w", err)
		}
		if root.Dev != jail.Dev || root.Ino != jail.Ino {
			return errors.New("/ is not the jail directory after chroot")
		}
		// access(2) checks with the real ids, now the account's: a
		// jail root it cannot search leaves the daemon unable to open
		// anything, which would show only later as odd errors.
		if err := syscall.Access("/", xOK); err != nil {
			return fmt.Errorf("the jail is not searchable by %s: chmod 0755 the queue directory: %w", a.Name, err)
		}
	}
	return nil
}

// verifyThreads checks every thread's status and returns how many it saw.
func verifyThreads(self *os.File, a Account) (int, error) {
	tfd, err := syscall.Openat(int(self.Fd()), "task", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open /proc/self/task: %w", err)
	}
	tasks := os.NewFile(uintptr(tfd), "/proc/self/task")
	defer tasks.Close()
	names, err := tasks.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("list /proc/self/task: %w", err)
	}
	seen := 0
	for _, tid := range names {
		fd, err := syscall.Openat(tfd, tid+"/status", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.ENOENT || err == syscall.ESRCH {
			continue // the thread exited meanwhile
		}
		if err != nil {
			return seen, fmt.Errorf("open /proc/self/task/%s/status: %w", tid, err)
		}
		f := os.NewFile(uintptr(fd), "status")
		data, err := io.ReadAll(io.LimitReader(f, 64<<10))
		f.Close()
		if err != nil {
			return seen, fmt.Errorf("read /proc/self/task/%s/status: %w", tid, err)
		}
		st, err := ParseStatus(data)
		if err != nil {
			return seen, fmt.Errorf("/proc/self/task/%s/status: %w", tid, err)
		}
		if err := st.Is(a); err != nil {
			return seen, fmt.Errorf("thread %s: %w", tid, err)
		}
		seen++
	}
	return seen, nil
}

// Status is the identity part of a /proc/PID/status file (proc(5)).
type Status struct {
	// UID and GID are the real, effective, saved and file-system ids.
	UID, GID [4]int
	Groups   []int
	// CapPrm, CapEff and CapAmb are the permitted, effective and
	// ambient capability sets.
	CapPrm, CapEff, CapAmb uint64
}

// ParseStatus reads the Uid, Gid, Groups and Cap* lines of a proc(5)
// status file; a missing or malformed one is an error, so a check built
// on it fails closed.
func ParseStatus(data []byte) (Status, error) {
	var st Status
	have := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		var err error
		switch key {
		case "Uid", "Gid":
			dst := &st.UID
			if key == "Gid" {
				dst = &st.GID
			}
			if len(f) != 4 {
				return st, fmt.Errorf("malformed %s line %q", key, line)
			}
			for i, s := range f {
				if dst[i], err = strconv.Atoi(s); err != nil || dst[i] < 0 {
					return st, fmt.Errorf("malformed %s line %q", key, line)
				}
			}
		case "Groups":
			st.Groups = st.Groups[:0]
			for _, s := range f {
				g, err := strconv.Atoi(s)
				if err != nil || g < 0 {
					return st, fmt.Errorf("malformed Groups line %q", line)
				}
				st.Groups = append(st.Groups, g)
			}
		case "CapPrm", "CapEff", "CapAmb":
			if len(f) != 1 {
				return st, fmt.Errorf("malformed %s line %q", key, line)
			}
			v, err := strconv.ParseUint(f[0], 16, 64)
			if err != nil {
				return st, fmt.Errorf("malformed %s line %q", key, line)
			}
			switch key {
			case "CapPrm":
				st.CapPrm = v
			case "CapEff":
				st.CapEff = v
			default:
				st.CapAmb = v
			}
		default:
			continue
		}
		have[key] = true
	}
	for _, k := range []string{"Uid", "Gid", "Groups", "CapPrm", "CapEff"} {
		if !have[k] {
			return st, fmt.Errorf("no %s line", k)
		}
	}
	return st, nil
}

// Is reports how st differs from a fully dropped account a: every uid and
// gid slot the account's, no supplementary groups, no capabilities.
func (st Status) Is(a Account) error {
	for i, name := range []string{"real", "effective", "saved", "file system"} {
		if st.UID[i] != a.UID {
			return fmt.Errorf("%s uid is %d, want %d", name, st.UID[i], a.UID)
		}
		if st.GID[i] != a.GID {
			return fmt.Errorf("%s gid is %d, want %d", name, st.GID[i], a.GID)
		}
	}
	if len(st.Groups) != 0 {
		return fmt.Errorf("supplementary groups %v remain", st.Groups)
	}
	if st.CapPrm != 0 || st.CapEff != 0 || st.CapAmb != 0 {
		return fmt.Errorf("capabilities remain (permitted %016x, effective %016x, ambient %016x)", st.CapPrm, st.CapEff, st.CapAmb)
	}
	return nil
}

// dirFDsWithin refuses open directory descriptors outside jail.
func dirFDsWithin(jail string) error {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list open descriptors: %w", err)
	}
	defer d.Close()
	own := int(d.Fd())
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("list open descriptors: %w", err)
	}
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == own {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			continue // closed meanwhile
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			continue
		}
		p, err := os.Readlink("/proc/self/fd/" + name)
		if err != nil {
			return fmt.Errorf("descriptor %d: %w", fd, err)
		}
		if jail != "/" && p != jail && !strings.HasPrefix(p, jail+"/") {
			return fmt.Errorf("descriptor %d is the directory %s, outside the jail: close it before dropping privileges", fd, p)
		}
	}
	return nil
}
