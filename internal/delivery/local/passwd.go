package local

import (
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"moat/internal/privsep"
)

// passwdFile is the account database local(8) consults through
// getpwnam(3). moat reads it directly (a static binary has no NSS), with
// privsep's passwd(5) parser.
const passwdFile = "/etc/passwd"

// account is one passwd entry: who a delivery runs as and where the
// user's home, .forward and home_mailbox are.
type account struct {
	name     string
	uid, gid uint32
	home     string
	shell    string
}

// passwdCache keeps the parsed passwd file between deliveries and reads
// it again only when the file changed (another inode, size or
// modification time: useradd and vipw replace it), so a delivery costs one
// stat(2) rather than a read and parse of the whole file.
type passwdCache struct {
	path string

	mu    sync.Mutex
	key   fileKey
	users []privsep.PasswdEntry
}

// fileKey identifies one version of a file.
type fileKey struct {
	dev, ino   uint64
	size, mtim int64
}

func newPasswdCache(path string) *passwdCache { return &passwdCache{path: path} }

// entries returns the current parsed file. An unreadable passwd file is
// an error: the caller defers rather than bouncing mail for a user who may
// well exist.
func (c *passwdCache) entries() ([]privsep.PasswdEntry, error) {
	fi, err := os.Stat(c.path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", c.path, err)
	}
	key := fileKey{size: fi.Size(), mtim: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		key.dev, key.ino = uint64(st.Dev), st.Ino
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users != nil && key == c.key {
		return c.users, nil
	}
	data, err := os.ReadFile(c.path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", c.path, err)
	}
	c.users, c.key = privsep.ParsePasswd(data), key
	return c.users, nil
}

// lookupUser returns name's passwd entry, nil when there is none.
func (c *passwdCache) lookupUser(name string) (*account, error) {
	return c.find(func(e privsep.PasswdEntry) bool { return e.Name == name })
}

// lookupUID returns the first passwd entry with uid, as getpwuid(3) does.
func (c *passwdCache) lookupUID(uid uint32) (*account, error) {
	return c.find(func(e privsep.PasswdEntry) bool { return uint32(e.UID) == uid })
}

func (c *passwdCache) find(match func(privsep.PasswdEntry) bool) (*account, error) {
	users, err := c.entries()
	if err != nil {
		return nil, err
	}
	for _, e := range users {
		if match(e) {
			return &account{name: e.Name, uid: uint32(e.UID), gid: uint32(e.GID), home: e.Home, shell: e.Shell}, nil
		}
	}
	return nil, nil
}

func statGID(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Gid, true
}

func statUID(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, true
}
