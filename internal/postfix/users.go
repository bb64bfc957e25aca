package postfix

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Account is one /etc/passwd entry (passwd(5)), read without cgo so moat
// stays a static binary: the fields check needs.
type Account struct {
	Name     string
	UID, GID int
	Shell    string
}

// ParsePasswd reads passwd(5) text. Lines that do not have seven
// colon-separated fields with numeric ids are skipped, as getpwnam(3)
// skips them; "+"/"-" NIS compat lines are skipped too.
func ParsePasswd(data []byte) []Account {
	var out []Account
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) != 7 || f[0] == "" || strings.HasPrefix(f[0], "+") || strings.HasPrefix(f[0], "-") {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
			continue
		}
		out = append(out, Account{Name: f[0], UID: uid, GID: gid, Shell: f[6]})
	}
	return out
}

// Group is one /etc/group entry (group(5)).
type Group struct {
	Name string
	GID  int
}

// ParseGroup reads group(5) text, skipping malformed lines as getgrnam(3)
// does.
func ParseGroup(data []byte) []Group {
	var out []Group
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) != 4 || f[0] == "" || strings.HasPrefix(f[0], "+") || strings.HasPrefix(f[0], "-") {
			continue
		}
		gid, err := strconv.Atoi(f[2])
		if err != nil || gid < 0 {
			continue
		}
		out = append(out, Group{Name: f[0], GID: gid})
	}
	return out
}

func lookupUser(path, name string) (*Account, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	for _, a := range ParsePasswd(data) {
		if a.Name == name {
			return &a, nil
		}
	}
	return nil, nil
}

// loginShell reports whether shell lets the account log in: Postfix's
// INSTALL advises mail_owner have no shell, and an interactive one turns a
// compromised daemon into a login.
func loginShell(shell string) bool {
	switch shell {
	case "/bin/false", "/usr/bin/false", "/sbin/nologin", "/usr/sbin/nologin", "/bin/nologin", "/usr/bin/nologin", "/dev/null":
		return false
	}
	return true
}
