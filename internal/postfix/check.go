package postfix

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/mastercf"
	"moat/internal/privsep"
	"moat/internal/queue"
)

// Problem is one finding of `postfix check`. Fatal problems are those a
// moat daemon would refuse at start-up; the rest are warnings.
type Problem struct {
	Fatal bool
	Msg   string
}

// Options are the host details Check reads; the zero value means the real
// host.
type Options struct {
	// Dir resolves a relative queue_directory. Postfix's master chdir()s to
	// queue_directory from where it was started, so a relative value means
	// relative to the current directory; examples/dev relies on that
	// (`./var/spool` from the repository root).
	Dir string
	// Passwd and Group are the account databases (passwd(5), group(5));
	// "" means /etc/passwd and /etc/group.
	Passwd, Group string
	// Euid is the uid the mail system will be started by, used when
	// EuidSet (tests), else os.Geteuid(). Only a root-started mail system
	// drops privileges to mail_owner, so only then must the queue belong to
	// mail_owner; otherwise it must belong to the starting user.
	Euid    int
	EuidSet bool
}

type checker struct {
	probs []Problem
}

func (k *checker) fatalf(format string, args ...any) {
	k.probs = append(k.probs, Problem{Fatal: true, Msg: fmt.Sprintf(format, args...)})
}

func (k *checker) warnf(format string, args ...any) {
	k.probs = append(k.probs, Problem{Msg: fmt.Sprintf(format, args...)})
}

// fatalLines reports each line of a joined error as its own problem, so
// every main.cf or master.cf line at fault gets one line of output.
func (k *checker) fatalLines(err error) {
	for _, l := range strings.Split(err.Error(), "\n") {
		if l != "" {
			k.fatalf("%s", l)
		}
	}
}

// Check runs every pre-flight check of `postfix check` (postfix(1):
// "Warn about bad directory/file ownership or permissions") on the
// configuration in dir and returns all problems found, not just the first,
// so the admin fixes them in one pass: main.cf, master.cf and its -o
// overrides, mail_owner and setgid_group, the configuration files'
// owners and modes, the queue directories and every lookup table named.
//
// Unlike Postfix, check creates nothing: missing queue subdirectories are
// only a warning, because `postfix start` (queue.Open with Create) makes
// them with the right owner and mode, and a read-only check can then be run
// safely by any user, on any copy of a configuration.
func Check(dir string, o Options) []Problem {
	k := &checker{}
	if o.Passwd == "" {
		o.Passwd = "/etc/passwd"
	}
	if o.Group == "" {
		o.Group = "/etc/group"
	}
	if !o.EuidSet {
		o.Euid = os.Geteuid()
	}
	if o.Dir == "" {
		o.Dir = "."
	}
	c, err := config.Open(dir)
	if err != nil {
		k.fatalLines(err)
		return k.probs
	}
	mpath := filepath.Join(dir, "master.cf")
	mf, merr := mastercf.Load(mpath)
	var extra []string
	if merr != nil {
		k.fatalLines(merr)
	} else {
		for _, s := range mf.Services {
			c.AddServiceParams(s.Name, s.Command)
		}
		for _, s := range mf.Services {
			for _, ov := range s.Overrides {
				extra = append(extra, ov.Name)
				config.References(ov.Value, func(n string) { extra = append(extra, n) })
				if err := c.CheckOverride(ov.Name, ov.Value); err != nil {
					k.fatalf("%s, line %d: service %s/%s: %v", mpath, ov.Line, s.Name, s.Type, err)
				}
			}
		}
	}
	if err := c.Check(); err != nil {
		k.fatalLines(err)
	}
	used := c.Used(extra)
	for _, w := range c.Warnings() {
		if i := strings.Index(w, ": unused parameter: "); i >= 0 {
			name, _, _ := strings.Cut(w[i+len(": unused parameter: "):], "=")
			if used[name] {
				continue
			}
		}
		k.warnf("%s", w)
	}
	k.configFiles(dir)
	acct := k.accounts(c, o)
	owner := acct.UID
	k.queue(c, o, acct)
	k.dataDir(c, o, owner)
	k.tables(c, mf, owner)
	k.smtpdServices(c, mf, o)
	return k.probs
}

// configFiles repeats postfix-script's checks on the configuration
// directory: files not owned by root, or writable by group or others, let
// someone other than root change what the mail system does.
func (k *checker) configFiles(dir string) {
	for _, name := range []string{"", "main.cf", "master.cf"} {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil {
			if name == "master.cf" && errors.Is(err, fs.ErrNotExist) {
				continue // already reported by master.cf loading
			}
			k.fatalf("%v", err)
			continue
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 {
			k.warnf("not owned by root: %s (chown root %s)", p, p)
		}
		if st.Mode().Perm()&0o022 != 0 {
			k.warnf("group or other writable: %s (chmod go-w %s)", p, p)
		}
	}
}

// accounts checks mail_owner and setgid_group with privsep.Accounts, the
// checks every moat daemon makes before dropping privileges (Postfix's
// mail_params does the same at every daemon's start), and returns
// mail_owner's account (UID -1 when it is unknown).
func (k *checker) accounts(c *config.Config, o Options) privsep.Account {
	a, errs := privsep.Accounts(c, privsep.Databases{Passwd: o.Passwd, Group: o.Group})
	for _, err := range errs {
		k.fatalf("%v", err)
	}
	if a.UID > 0 {
		if u, ok, err := privsep.LookupUser(o.Passwd, a.Name); err == nil && ok && loginShell(u.Shell) {
			k.warnf("mail_owner %s has login shell %s: set it to /usr/sbin/nologin (usermod -s /usr/sbin/nologin %s)", a.Name, u.Shell, a.Name)
		}
	}
	return a
}

// queue checks the queue directories with queue.Check, which reports all
// problems without creating anything.
func (k *checker) queue(c *config.Config, o Options, acct privsep.Account) {
	owner := acct.UID
	qdir := c.Get("queue_directory")
	if qdir == "" {
		k.fatalf("file %s: parameter queue_directory is empty", c.Path)
		return
	}
	if !filepath.IsAbs(qdir) {
		qdir = filepath.Join(o.Dir, qdir)
	}
	st, err := os.Stat(qdir)
	if err != nil {
		k.fatalf("queue_directory %s: %v: create it (mkdir -m 0755 %s) or set queue_directory in %s", qdir, errors.Unwrap(err), qdir, c.Path)
		return
	}
	if !st.IsDir() {
		k.fatalf("queue_directory %s is not a directory", qdir)
		return
	}
	opts, err := queue.OptionsFromConfig(c)
	if err != nil {
		// The bad value is already reported with main.cf's checks.
		opts = queue.Options{}
	}
	opts.OwnerSet, opts.Owner = true, o.Euid
	if o.Euid == 0 {
		opts.Owner = owner
		if owner <= 0 {
			// mail_owner is unusable (already reported): demand only
			// that the queue directories agree with incoming's owner,
			// rather than repeat that error for each directory.
			opts.Owner = ownerOf(filepath.Join(qdir, queue.Incoming))
		}
	}
	missing := map[string]bool{}
	for _, err := range queue.Check(qdir, opts) {
		if errors.Is(err, fs.ErrNotExist) {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				// A missing hashed queue's subdirectories are missing
				// too; naming the top one is enough.
				missing[pe.Path] = true
				if missing[filepath.Dir(pe.Path)] {
					continue
				}
				k.warnf("missing queue directory %s: postfix start creates it", pe.Path)
				continue
			}
		}
		k.fatalf("%v", err)
	}
	if o.Euid == 0 && owner > 0 {
		k.jailedQueue(qdir, acct)
	}
}

// jailedQueue adds privsep.CheckQueue's findings — what a root-started
// mail system with chrooted mail_owner daemons needs beyond queue.Check:
// the top directory and the jail's etc/ and pid/ root's, every queue and
// socket directory and what lies beneath mail_owner's. Faults queue.Check
// already reported (the top's mode, each queue directory's owner, mode
// and type) are not repeated.
func (k *checker) jailedQueue(qdir string, acct privsep.Account) {
	queueDirs := map[string]bool{}
	for _, n := range queue.Names() {
		queueDirs[filepath.Join(qdir, n)] = true
	}
	for _, err := range privsep.CheckQueue(qdir, acct) {
		var p *privsep.QueueProblem
		if errors.As(err, &p) {
			switch {
			case p.Kind == privsep.ProblemOther:
				continue // unreadable or missing: queue.Check said so
			case p.Path == qdir && p.Kind == privsep.ProblemMode:
				continue
			case queueDirs[p.Path] && p.Kind != privsep.ProblemBelow:
				continue
			}
		}
		k.fatalf("%v", err)
	}
}

// tables opens every lookup table the configuration names, with the
// options moat's daemons use, so an unreadable, badly owned, stale or
// unsupported table is named now rather than when mail arrives. Only
// parameters main.cf or a master.cf override sets are walked: Postfix's
// defaults name tables (nis:mail.aliases, hash:/etc/aliases) that only the
// local delivery agent opens, which moat does not have yet.
func (k *checker) tables(c *config.Config, mf *mastercf.File, owner int) {
	utf8, _ := c.Bool("smtputf8_enable")
	var trusted []int
	if owner > 0 {
		trusted = []int{owner}
	}
	seen := map[string]bool{}
	var refs []TableRef
	classes := map[string]bool{}
	cl, _ := c.List("smtpd_restriction_classes")
	for _, n := range cl {
		classes[n] = true
	}
	collect := func(cc *config.Config, name, where string) {
		p, ok := cc.Table().Lookup(name)
		var specs []string
		switch {
		case classes[name] || ok && p.Type == config.TypeRestrictions:
			t, _ := RestrictionTables(cc.Get(name), classes)
			specs = t
		case ok && p.Type == config.TypeMapList && !skipTableParam(name):
			specs = MapListTables(cc.Get(name))
		case ok && p.Type == config.TypeList:
			specs = ListTables(cc.Get(name))
		}
		for _, s := range specs {
			refs = append(refs, TableRef{Spec: s, Param: name, Where: where})
		}
	}
	for _, e := range c.Entries() {
		collect(c, e.Name, "")
	}
	if mf != nil {
		for _, s := range mf.Services {
			if len(s.Overrides) == 0 {
				continue
			}
			sc := c.WithOverrides(s.DaemonOverrides())
			done := map[string]bool{}
			for _, ov := range s.Overrides {
				if done[ov.Name] {
					continue
				}
				done[ov.Name] = true
				collect(sc, ov.Name, fmt.Sprintf("%s, line %d: service %s/%s", mf.Path, ov.Line, s.Name, s.Type))
			}
		}
	}
	for _, r := range refs {
		if seen[r.Spec] {
			continue
		}
		seen[r.Spec] = true
		where := r.Param
		if r.Where != "" {
			where = r.Where + ": " + r.Param
		}
		opts := maps.Options{Fold: true, UTF8: utf8, TrustedUIDs: trusted,
			Warn: func(msg string) { k.warnf("%s: %s", r.Spec, msg) }}
		t, err := maps.Open(r.Spec, opts)
		if err != nil {
			if errors.Is(err, maps.ErrUnsupported) {
				k.fatalf("%s: table %s: unsupported dictionary type: use one of %s", where, r.Spec, strings.Join(maps.Types, ", "))
				continue
			}
			msg := strings.TrimPrefix(err.Error(), "open "+r.Spec+": ")
			if typ, name, _ := maps.Split(r.Spec); errors.Is(err, fs.ErrNotExist) && maps.IndexPath(typ, name) != name {
				if _, serr := os.Stat(name); serr == nil {
					msg += fmt.Sprintf(" (build it: moat postmap %s)", r.Spec)
				}
			}
			k.fatalf("%s: table %s: %s", where, r.Spec, msg)
			continue
		}
		// Some tables load lazily; one lookup makes them read (and
		// judge) their files now rather than with the first mail.
		if _, _, err := t.Lookup("postfix-check.invalid"); err != nil {
			k.fatalf("%s: table %s: lookup fails: %v", where, r.Spec, err)
		}
		t.Close()
	}
}

// ownerOf returns path's owner uid, or 0 when it cannot be read.
func ownerOf(path string) int {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid)
	}
	return 0
}

// dataDir repeats postfix-script's warning about data_directory: the
// daemons that keep caches there (verify, postscreen, tlsmgr) run as
// mail_owner and cannot write a directory someone else owns; in moat the
// smtp agent's MTA-STS policy cache. A missing data_directory is not a
// problem: the master makes the cache directory when it starts.
func (k *checker) dataDir(c *config.Config, o Options, owner int) {
	d := c.Get("data_directory")
	if d == "" || owner <= 0 || o.Euid != 0 {
		return
	}
	if !filepath.IsAbs(d) {
		d = filepath.Join(o.Dir, d)
	}
	if _, err := os.Stat(d); err != nil {
		return
	}
	if uid := ownerOf(d); uid != owner {
		k.warnf("not owned by %s: %s (chown %s %s)", c.Get("mail_owner"), d, c.Get("mail_owner"), d)
	}
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
