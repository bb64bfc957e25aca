package privsep

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"moat/internal/config"
)

// Account is the identity a daemon drops to: mail_owner's name, uid and
// primary gid (postconf(5), mail_owner).
type Account struct {
	Name     string
	UID, GID int
}

// Databases names the account files read; the zero value means the host's
// /etc/passwd and /etc/group. Moat is a static binary (no NSS), so these
// files are the account database, as for Go's os/user without cgo; tests
// point them at private copies.
type Databases struct {
	Passwd, Group string
}

// PasswdEntry is one passwd(5) line: what the mail_owner checks, postfix
// check's login-shell warning and local(8) (home, $shell) need.
type PasswdEntry struct {
	Name     string
	UID, GID int
	Home     string
	Shell    string
}

// GroupEntry is one group(5) line.
type GroupEntry struct {
	Name string
	GID  int
}

// ParsePasswd reads passwd(5) text. Lines without seven colon-separated
// fields and numeric, non-negative ids are skipped, as getpwent(3) skips
// them, and so are NIS compat lines ("+"/"-"): moat does not follow them.
func ParsePasswd(data []byte) []PasswdEntry {
	var out []PasswdEntry
	eachLine(data, func(line string) {
		f := strings.Split(line, ":")
		if len(f) != 7 || !accountName(f[0]) {
			return
		}
		uid, ok1 := parseID(f[2])
		gid, ok2 := parseID(f[3])
		if ok1 && ok2 {
			out = append(out, PasswdEntry{Name: f[0], UID: uid, GID: gid, Home: f[5], Shell: f[6]})
		}
	})
	return out
}

// ParseGroup reads group(5) text, skipping malformed lines as getgrent(3)
// does.
func ParseGroup(data []byte) []GroupEntry {
	var out []GroupEntry
	eachLine(data, func(line string) {
		f := strings.Split(line, ":")
		if len(f) != 4 || !accountName(f[0]) {
			return
		}
		if gid, ok := parseID(f[2]); ok {
			out = append(out, GroupEntry{Name: f[0], GID: gid})
		}
	})
	return out
}

func eachLine(data []byte, fn func(string)) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
}

func accountName(s string) bool {
	return s != "" && s[0] != '+' && s[0] != '-' && !strings.ContainsAny(s, " \t\x00")
}

// parseID accepts a decimal id that fits uid_t/gid_t (32 bits) and is not
// the reserved (uid_t)-1.
func parseID(s string) (int, bool) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, false
	}
	return int(n), true
}

// MailOwner resolves mail_owner (postconf(5)) from the passwd database and
// refuses an unsafe one, as every Postfix daemon does at start
// (mail_params.c): root (uid 0), an unknown account, a uid shared with
// another account, gid 0; and setgid_group (postdrop) must exist, not be
// gid 0, not share its gid with another group, and differ from
// mail_owner's group — otherwise the group that lets postdrop write
// maildrop/ would be the daemons' own. The error joins every problem,
// one per line, each naming the fix.
func MailOwner(cfg *config.Config) (Account, error) {
	a, errs := Accounts(cfg, Databases{})
	if len(errs) > 0 {
		return Account{}, errors.Join(errs...)
	}
	return a, nil
}

// Accounts runs MailOwner's checks against db and returns every problem
// rather than the first, for `postfix check`. The Account is mail_owner's
// entry as found — it may be unsafe when problems are returned — and has
// UID -1 when the account is unknown.
func Accounts(cfg *config.Config, db Databases) (Account, []error) {
	if db.Passwd == "" {
		db.Passwd = "/etc/passwd"
	}
	if db.Group == "" {
		db.Group = "/etc/group"
	}
	owner := cfg.Get("mail_owner")
	sgid := cfg.Get("setgid_group")
	a := Account{Name: owner, UID: -1, GID: -1}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("file %s: "+format, append([]any{cfg.Path}, args...)...))
	}
	pdata, err := os.ReadFile(db.Passwd)
	if err != nil {
		return a, []error{fmt.Errorf("read passwd database: %w", err)}
	}
	gdata, err := os.ReadFile(db.Group)
	if err != nil {
		return a, []error{fmt.Errorf("read group database: %w", err)}
	}
	users := ParsePasswd(pdata)
	groups := ParseGroup(gdata)

	if p, ok := findUser(users, owner); !ok {
		bad("parameter mail_owner: unknown user name value: %s (create the account or set mail_owner)", owner)
	} else {
		a.UID, a.GID = p.UID, p.GID
		if p.UID == 0 {
			bad("parameter mail_owner: user %s has privileged user ID: set mail_owner to a dedicated unprivileged account", owner)
		}
		if p.GID == 0 && p.UID != 0 { // root's gid is said with its uid
			bad("parameter mail_owner: user %s has privileged group ID: give %s its own group (usermod -g GROUP %s)", owner, owner, owner)
		}
		// Postfix asks getpwuid() for the first account with this uid;
		// moat looks at every line, so a duplicate listed after
		// mail_owner is caught too. A shared uid lets that other account
		// (or whatever runs as it) act as the mail system.
		for _, o := range users {
			if o.UID == p.UID && o.Name != owner && p.UID != 0 {
				bad("parameter mail_owner: user %s has same user ID as %s: give mail_owner a user ID of its own", owner, o.Name)
				break
			}
		}
	}
	if g, ok := findGroup(groups, sgid); !ok {
		bad("parameter setgid_group: unknown group name: %s (create the group or set setgid_group)", sgid)
	} else {
		switch {
		case g.GID == 0:
			bad("parameter setgid_group: group %s has privileged group ID: set setgid_group to a dedicated group", sgid)
		case a.GID >= 0 && g.GID == a.GID:
			bad("parameter setgid_group: group %s has same group ID as mail_owner group ID: give setgid_group its own group", sgid)
		default:
			for _, o := range groups {
				if o.GID == g.GID && o.Name != sgid {
					bad("parameter setgid_group: group %s has same group ID as %s: give setgid_group a group ID of its own", sgid, o.Name)
					break
				}
			}
		}
	}
	return a, errs
}

// findUser returns the first entry named name, as getpwnam(3) does.
// LookupUser reads the passwd file at path ("" = /etc/passwd) and
// returns name's entry, as getpwnam(3) would from files; ok is false when
// there is none.
func LookupUser(path, name string) (e PasswdEntry, ok bool, err error) {
	if path == "" {
		path = "/etc/passwd"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return PasswdEntry{}, false, fmt.Errorf("read %s: %w", path, err)
	}
	e, ok = findUser(ParsePasswd(data), name)
	return e, ok, nil
}

func findUser(users []PasswdEntry, name string) (PasswdEntry, bool) {
	for _, u := range users {
		if u.Name == name {
			return u, true
		}
	}
	return PasswdEntry{}, false
}

func findGroup(groups []GroupEntry, name string) (GroupEntry, bool) {
	for _, g := range groups {
		if g.Name == name {
			return g, true
		}
	}
	return GroupEntry{}, false
}
