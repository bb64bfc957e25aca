package local

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// passwdFile is the account database local(8) consults through
// getpwnam(3). moat reads it directly: os/user without cgo has no login
// shell, which $shell and $SHELL need.
const passwdFile = "/etc/passwd"

// account is one passwd entry: who a delivery runs as and where the
// user's home, .forward and home_mailbox are.
type account struct {
	name     string
	uid, gid uint32
	home     string
	shell    string
}

// lookupUser returns name's passwd entry, nil when there is none. An
// unreadable passwd file is an error: the caller defers rather than
// bouncing mail for a user who may well exist.
func lookupUser(name string) (*account, error) {
	return scanPasswd(func(a *account) bool { return a.name == name })
}

// lookupUID returns the first passwd entry with uid, as getpwuid(3) does.
func lookupUID(uid uint32) (*account, error) {
	return scanPasswd(func(a *account) bool { return a.uid == uid })
}

func scanPasswd(match func(*account) bool) (*account, error) {
	f, err := os.Open(passwdFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", passwdFile, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		a, ok := parsePasswdLine(sc.Text())
		if ok && match(a) {
			return a, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", passwdFile, err)
	}
	return nil, nil
}

// parsePasswdLine parses "name:pw:uid:gid:gecos:home:shell" (passwd(5)).
// NIS "+" and "-" entries are not accounts.
func parsePasswdLine(line string) (*account, bool) {
	f := strings.Split(line, ":")
	if len(f) != 7 || f[0] == "" || f[0][0] == '+' || f[0][0] == '-' {
		return nil, false
	}
	uid, err1 := strconv.ParseUint(f[2], 10, 32)
	gid, err2 := strconv.ParseUint(f[3], 10, 32)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	return &account{name: f[0], uid: uint32(uid), gid: uint32(gid), home: f[5], shell: f[6]}, true
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
