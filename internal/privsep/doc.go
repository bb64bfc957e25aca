// Package privsep drops a moat daemon's privileges the way Postfix's
// daemons do (master(5), "chroot" and "unpriv" columns; postconf(5),
// mail_owner): a child of the master, started as root, opens everything it
// needs, then chroots into queue_directory when its master.cf row says
// chroot = y, and becomes mail_owner for good.
//
// # Order
//
//  1. The master (root) resolves the account with MailOwner, refuses an
//     unsafe queue with CheckQueue, and refreshes the jail's copies of the
//     host's resolver and time-zone files with PrepareJail — at start-up
//     and at every reload, so a jailed child sees the host's current
//     /etc/resolv.conf and /etc/hosts, as Debian's postfix start-up script
//     does.
//  2. The child (root, re-executed by the master) opens what lives outside
//     the jail: its listeners (inherited), lookup tables, certificates and
//     keys, the log sink (/dev/log or maillog_file), the queue directory.
//  3. The child calls Drop: chroot (when asked), setgroups(), setgid,
//     setuid, and checks from the kernel's own view (/proc, read through
//     descriptors opened before the chroot) that every thread is now
//     mail_owner with no capabilities and that root cannot be regained.
//     Any failure is an error and the child must exit: it never runs half
//     privileged.
//
// # What a jailed child can reach
//
// Can: what it opened before Drop (descriptors survive chroot and setuid);
// inside queue_directory, what mail_owner may touch: the queue directories
// (owned by mail_owner), the private/ and public/ sockets, and, read-only,
// the copies in etc/ that PrepareJail keeps (resolv.conf, hosts, services,
// localtime, nsswitch.conf, host.conf), which is all Go's own resolver and
// time package read. So DNS works, through the jail's resolv.conf, and
// local time is the host's. The network, as any unprivileged process.
//
// Cannot: any path outside queue_directory (no /etc/passwd, /home, /proc,
// /dev, the configuration directory or its tables: those come through
// descriptors opened earlier or, later, the proxymap service); root-owned
// files in the jail that mail_owner cannot read (etc/ is root's, mode
// 0644 files in a 0755 directory); regaining root (setuid(0) fails, the
// saved set-user-ID and the capability sets are cleared); escaping through
// a directory descriptor (Drop refuses to jail a process holding a
// directory descriptor outside the jail, the classic fchdir escape).
//
// An unjailed mail_owner child (chroot = n) reaches the whole file system
// as mail_owner: world-readable files, nothing root-only.
//
// Go specifics: since Go 1.16 syscall.Setuid, Setgid and Setgroups act on
// every thread of the process (runtime.AllThreadsSyscall, or glibc's
// set*id broadcast when cgo is linked); chroot and the working directory
// are per process. Drop verifies every thread listed in /proc/self/task
// rather than trusting that. Moat's binary is built with CGO_ENABLED=0, so
// its resolver is Go's: no NSS libraries are needed in the jail, unlike
// Postfix's (Debian copies libnss_* and libresolv into the jail).
package privsep
