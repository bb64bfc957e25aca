package master

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"moat/internal/config"
)

// dropPrivileges makes a child what master.cf's unpriv and chroot columns
// say (master(5)): with unpriv, mail_owner with no supplementary groups;
// with chroot, jailed in queue_directory. The working directory stays
// the queue directory ("/" in the jail), which the child's relative paths
// rely on. A master not started as root runs children as itself (it
// warned once at start).
//
// This is a local stand-in for internal/privsep.Drop (engineer C's
// package, not in the tree yet); it makes the same calls in the same
// order and checks the result, so swapping it in is one line.
func dropPrivileges(cfg *config.Config, unpriv, jail bool, qdir string) error {
	if os.Geteuid() != 0 || !unpriv {
		if jail && os.Geteuid() == 0 {
			return chrootTo(qdir)
		}
		return nil
	}
	name := cfg.Get("mail_owner")
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("mail_owner %q: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || uid == 0 || gid == 0 {
		return fmt.Errorf("mail_owner %q: not an unprivileged account (uid %s, gid %s)", name, u.Uid, u.Gid)
	}
	if jail {
		if err := chrootTo(qdir); err != nil {
			return err
		}
	}
	// Go applies these to every thread of the process (since Go 1.16).
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	if err := syscall.Setuid(0); err == nil {
		return fmt.Errorf("setuid %d did not stick: the process could become root again", uid)
	}
	if os.Geteuid() != uid || os.Getegid() != gid {
		return fmt.Errorf("privileges not dropped: euid %d egid %d", os.Geteuid(), os.Getegid())
	}
	return nil
}

// chrootTo jails the process in dir and keeps "/" (dir) as its working
// directory.
func chrootTo(dir string) error {
	if err := syscall.Chroot(dir); err != nil {
		return fmt.Errorf("chroot %s: %w", dir, err)
	}
	if err := syscall.Chdir("/"); err != nil {
		return fmt.Errorf("chdir / in %s: %w", dir, err)
	}
	return nil
}
