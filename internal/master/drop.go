package master

import (
	"os"

	"moat/internal/config"
	"moat/internal/privsep"
)

// dropPrivileges makes a child what master.cf's unpriv and chroot columns
// say (master(5)): with unpriv, mail_owner with no supplementary groups
// (privsep.Drop, which verifies it from the kernel's view); with chroot,
// jailed in queue_directory (privsep.Jail for a root row). The working
// directory stays the queue directory ("/" in the jail), which the
// child's relative paths rely on. A master not started as root runs its
// children as itself, unjailed (it warned once at start).
func dropPrivileges(cfg *config.Config, unpriv, jail bool, qdir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	dir := ""
	if jail {
		dir = qdir
	}
	if !unpriv {
		if dir == "" {
			return nil
		}
		return privsep.Jail(dir)
	}
	a, err := privsep.MailOwner(cfg)
	if err != nil {
		return err
	}
	return privsep.Drop(a, dir)
}
