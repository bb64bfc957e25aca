package privsep

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// JailFiles are the host files PrepareJail copies into queue_directory/etc:
// Debian's postfix start-up script (configure-instance.sh) copies the
// same set, which is what name resolution (Go's resolver reads
// resolv.conf, hosts and nsswitch.conf; net.LookupPort reads services) and
// local time (localtime) need inside the jail. host.conf is glibc's and
// copied only to match what admins expect to find there.
func JailFiles() []string {
	return []string{"resolv.conf", "hosts", "services", "localtime", "nsswitch.conf", "host.conf"}
}

// PrepareJail makes queueDir usable as a chroot for moat's daemons: it
// copies JailFiles from the host's /etc into queueDir/etc (mode 0644, owned
// by root), following symbolic links on the host side (/etc/resolv.conf
// and /etc/localtime are often links to files the jail cannot reach). A
// file missing on the host is removed from the jail, so the jail mirrors
// the host rather than keeping stale name servers. Nothing else is made: a
// jailed daemon opens its log, tables and certificates before it enters
// the jail, and Go needs no /dev/urandom (it uses getrandom(2)).
//
// It is idempotent and safe to run while jailed children read the files:
// an unchanged file is left alone, a changed one is replaced atomically
// (write beside, fsync, rename). It must run as root: the copies belong to
// root so mail_owner cannot change what its own resolver believes.
func PrepareJail(queueDir string) error {
	return prepareJail(queueDir, "/etc")
}

// prepareJail copies from srcEtc, which tests point at a directory of
// their own.
func prepareJail(queueDir, srcEtc string) error {
	if !filepath.IsAbs(queueDir) {
		return fmt.Errorf("prepare jail %s: queue_directory must be an absolute path", queueDir)
	}
	if err := checkRootDir(queueDir); err != nil {
		return fmt.Errorf("prepare jail: %w", err)
	}
	etc := filepath.Join(queueDir, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("prepare jail: %w", err)
	}
	// etc/ may be left by an earlier run or by Postfix; Lstat refuses a
	// symbolic link, which would otherwise let whoever planted it choose
	// where root writes.
	if err := checkRootDir(etc); err != nil {
		return fmt.Errorf("prepare jail: %w", err)
	}
	for _, name := range JailFiles() {
		if err := syncFile(filepath.Join(srcEtc, name), filepath.Join(etc, name)); err != nil {
			return fmt.Errorf("prepare jail: %w", err)
		}
	}
	return nil
}

// checkRootDir accepts a real directory (not a link) owned by root and not
// writable by group or others: anything else could be changed under root's
// feet by someone else.
func checkRootDir(p string) error {
	st, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return &dirFault{ProblemType, fmt.Sprintf("%s is a symbolic link: replace it with a directory (mkdir -m 0755 %s)", p, p)}
	}
	if !st.IsDir() {
		return &dirFault{ProblemType, fmt.Sprintf("%s is not a directory", p)}
	}
	if uid := ownerUID(st); uid != 0 {
		return &dirFault{ProblemOwner, fmt.Sprintf("%s is owned by uid %d, not root: chown root %s", p, uid, p)}
	}
	if st.Mode().Perm()&0o022 != 0 {
		return &dirFault{ProblemMode, fmt.Sprintf("%s has mode %04o, writable by group or others: chmod go-w %s", p, st.Mode().Perm(), p)}
	}
	return nil
}

// dirFault is checkRootDir's finding, classified for CheckQueue.
type dirFault struct {
	kind ProblemKind
	msg  string
}

func (d *dirFault) Error() string { return d.msg }

func ownerUID(st fs.FileInfo) int {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid)
	}
	return -1
}

// maxJailFile bounds what is copied: the files are small, and a huge or
// endless one (a FIFO, /dev/zero behind a link) must not hang start-up.
const maxJailFile = 4 << 20

// syncFile makes dst a root-owned 0644 copy of src, or removes dst when src
// does not exist.
func syncFile(src, dst string) error {
	want, err := readSource(src)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err != nil {
		return err
	}
	if st, err := os.Lstat(dst); err == nil && st.Mode().IsRegular() && st.Mode().Perm() == 0o644 && ownerUID(st) == 0 {
		if have, err := os.ReadFile(dst); err == nil && bytes.Equal(have, want) {
			return nil
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(want); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Chown(0, 0); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	ok = true
	return nil
}

// readSource reads a regular file (after links), bounded by maxJailFile.
func readSource(src string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer; the mode check below then refuses it.
	f, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", src)
	}
	if st.Size() > maxJailFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", src, maxJailFile)
	}
	buf := make([]byte, st.Size())
	n, err := f.ReadAt(buf, 0)
	if err != nil && n != len(buf) {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	return buf[:n], nil
}
