package privsep

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// QueueProblem is one finding of CheckQueue: the path at fault, what kind
// of fault, and a message naming the fix. Callers that also run the queue
// package's own checks (mode and owner of each queue directory) match on
// Path and Kind to report each fault once.
type QueueProblem struct {
	Path string
	Kind ProblemKind
	Msg  string
}

// ProblemKind classifies a QueueProblem.
type ProblemKind int

// The kinds of queue problems.
const (
	ProblemOther ProblemKind = iota // unreadable or missing
	ProblemOwner                    // Path has the wrong owner
	ProblemMode                     // Path is writable by group or others
	ProblemType                     // Path is not a directory (a link, a file)
	ProblemBelow                    // entries beneath Path are at fault
)

func (p *QueueProblem) Error() string { return p.Msg }

// mailOwnerDirs are the queue_directory entries that belong to mail_owner,
// as postfix-script's check-warn lists them (plus maildrop, which it
// checks without descending: it is where postdrop writes).
var mailOwnerDirs = []string{"active", "bounce", "corrupt", "defer", "deferred", "flush",
	"hold", "incoming", "private", "public", "saved", "trace"}

// rootDirs are the root-owned entries of the jail: pid/ (the master's lock)
// and the system directories a chroot may carry, whose files jailed
// daemons trust (etc/resolv.conf tells the resolver where DNS is).
var rootDirs = []string{"pid", "etc", "bin", "lib", "sbin", "usr"}

// CheckQueue refuses a queue directory a jailed mail_owner daemon could
// subvert or others could reach into, with postfix-script's check-warn
// rules made errors: the top directory must be root's and not writable by
// group or others (else mail_owner could replace etc/ and steer every
// jailed resolver); pid/ and the jail's etc/, bin/, lib/, sbin/, usr/
// trees root's and not writable by group or others; the queue and socket
// directories mail_owner's, and everything beneath them too (sockets and
// FIFOs aside; maildrop/ is not descended into, as Postfix does not). A
// missing entry is not a problem here: the master creates the queue
// directories, and the jail's only when needed.
//
// Files beneath a directory not owned by mail_owner are reported once per
// directory with a count, so a large queue gives one line, not thousands.
func CheckQueue(queueDir string, a Account) []error {
	var errs []error
	bad := func(path string, kind ProblemKind, format string, args ...any) {
		errs = append(errs, &QueueProblem{Path: path, Kind: kind, Msg: fmt.Sprintf(format, args...)})
	}
	// The top may be a symbolic link (admins move /var/spool/postfix to
	// a bigger disk); what it points to is judged.
	st, err := os.Stat(queueDir)
	if err != nil {
		return []error{&QueueProblem{Path: queueDir, Kind: ProblemOther, Msg: fmt.Sprintf("queue_directory %s: %v", queueDir, errors.Unwrap(err))}}
	}
	if !st.IsDir() {
		return []error{&QueueProblem{Path: queueDir, Kind: ProblemType, Msg: fmt.Sprintf("queue_directory %s is not a directory", queueDir)}}
	}
	if uid := ownerUID(st); uid != 0 {
		bad(queueDir, ProblemOwner, "queue_directory %s is owned by uid %d, not root: chown root %s", queueDir, uid, queueDir)
	}
	if st.Mode().Perm()&0o022 != 0 {
		bad(queueDir, ProblemMode, "queue_directory %s is writable by group or others (mode %04o): chmod go-w %s", queueDir, st.Mode().Perm(), queueDir)
	}
	for _, name := range rootDirs {
		p := filepath.Join(queueDir, name)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := checkRootDir(p); err != nil {
			bad(p, rootDirKind(err), "%v", err)
			continue
		}
		if name == "pid" {
			continue // its files are the master's; only the directory matters
		}
		walkOwned(p, func(path string, d fs.DirEntry, info fs.FileInfo) string {
			if ownerUID(info) != 0 {
				return "not owned by root"
			}
			if info.Mode()&fs.ModeSymlink == 0 && info.Mode().Perm()&0o022 != 0 {
				return "writable by group or others"
			}
			return ""
		}, func(n int, first, what string) {
			bad(p, ProblemBelow, "%d entries under %s are %s, first %s: chown -R root %s; chmod -R go-w %s", n, p, what, first, p, p)
		})
	}
	for _, name := range append(append([]string{}, mailOwnerDirs...), "maildrop") {
		p := filepath.Join(queueDir, name)
		info, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			bad(p, ProblemOther, "%v", err)
			continue
		}
		if !info.IsDir() {
			bad(p, ProblemType, "%s is not a directory (a symbolic link would let a daemon write elsewhere): replace it with a directory", p)
			continue
		}
		if uid := ownerUID(info); uid != a.UID {
			bad(p, ProblemOwner, "not owned by %s: %s is owned by uid %d (chown %s %s)", a.Name, p, uid, a.Name, p)
		}
		if name == "maildrop" {
			continue
		}
		walkOwned(p, func(path string, d fs.DirEntry, info fs.FileInfo) string {
			if info.Mode()&(fs.ModeSocket|fs.ModeNamedPipe) != 0 {
				return "" // master-made endpoints, as postfix-script skips them
			}
			if ownerUID(info) != a.UID {
				return "not owned by " + a.Name
			}
			return ""
		}, func(n int, first, what string) {
			bad(p, ProblemBelow, "%d entries under %s are %s, first %s: chown -R %s %s", n, p, what, first, a.Name, p)
		})
	}
	return errs
}

// rootDirKind classifies checkRootDir's error.
func rootDirKind(err error) ProblemKind {
	var k *dirFault
	if errors.As(err, &k) {
		return k.kind
	}
	return ProblemOther
}

// walkOwned walks the entries below top (not top itself, already judged),
// without following links, and reports per kind of fault how many entries
// have it and the first one.
func walkOwned(top string, fault func(string, fs.DirEntry, fs.FileInfo) string, report func(n int, first, what string)) {
	counts := map[string]int{}
	first := map[string]string{}
	var order []string
	_ = filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == top {
			return nil // vanished or unreadable: the queue code reports those
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if what := fault(path, d, info); what != "" {
			if counts[what] == 0 {
				first[what] = path
				order = append(order, what)
			}
			counts[what]++
		}
		return nil
	})
	for _, what := range order {
		report(counts[what], first[what], what)
	}
}
