// Package postdrop is postdrop(1): it writes one message, a maildrop
// stream (internal/maildrop) read from standard input, as a file in
// queue_directory/maildrop/ for pickup(8) to take into the queue.
//
// As in Postfix, postdrop is the one program a user runs with an extra
// privilege: `make install` installs a copy of moat as /usr/sbin/postdrop
// set-group-ID setgid_group (postdrop), and maildrop/ is mode 1730 owned by
// mail_owner and that group, so only through postdrop may a user add a
// file there, nobody but mail_owner may list or remove files, and every
// file belongs to the user who wrote it (pickup trusts that owner, not the
// file's content, for who submitted it). cmd/moat runs a set-group-ID
// process as postdrop only, whatever its name or arguments.
//
// Before a file becomes visible postdrop checks, as Postfix's does,
// authorized_submit_users (postconf(5)) against the real user's login
// name and local_login_sender_maps (Postfix 3.6+) against the envelope
// sender; moat also checks the whole stream (format, checksum,
// message_size_limit), so pickup never meets a file a well-behaved
// sendmail could not have written.
package postdrop

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"moat/internal/config"
	"moat/internal/maildrop"
	"moat/internal/maps"
	"moat/internal/matchlist"
	"moat/internal/queue"
)

// Exit statuses of sysexits.h, which sendmail(1) and postdrop(1) return
// so that callers (cron, mail user agents) can tell a temporary failure
// (EX_TEMPFAIL: try again later) from a permanent one.
const (
	ExUsage       = 64
	ExDataErr     = 65
	ExNoUser      = 67
	ExUnavailable = 69
	ExSoftware    = 70
	ExOSErr       = 71
	ExCantCreat   = 73
	ExIOErr       = 74
	ExTempFail    = 75
	ExNoPerm      = 77
	ExConfig      = 78
)

// Error is a failure with the exit status the command should return.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func fail(status int, format string, args ...any) error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// Status returns err's exit status: its own for an *Error, EX_TEMPFAIL
// for anything else (an I/O error is worth retrying).
func Status(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return ExTempFail
}

// Submitter is the real user behind a submission, from getuid(2): the
// kernel's word, never the message's.
type Submitter struct {
	UID   int
	Login string // "" when the uid has no passwd entry
}

// Self returns the calling process's real user.
func Self() Submitter {
	uid := os.Getuid()
	s := Submitter{UID: uid}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		s.Login = u.Username
	}
	return s
}

// Name is the submitter's name as Postfix prints it in messages:
// "login(uid)", with "unknown" for a uid without a login name.
func (s Submitter) Name() string {
	l := s.Login
	if l == "" {
		l = "unknown"
	}
	return fmt.Sprintf("%s(%d)", l, s.UID)
}

// Authorize applies authorized_submit_users: the login name, or
// "unknown" for a uid without one, must be on the list (postconf(5)).
func Authorize(cfg *config.Config, s Submitter) error {
	name := s.Login
	if name == "" {
		name = "unknown"
	}
	l, err := matchlist.New(cfg, "authorized_submit_users", matchlist.String, maps.Options{Fold: true})
	if err != nil {
		return fail(ExConfig, "authorized_submit_users: %v", err)
	}
	defer l.Close()
	ok, err := l.Match(name, netipZero)
	if err != nil {
		return fail(ExTempFail, "authorized_submit_users lookup for %s: %v", name, err)
	}
	if !ok {
		return fail(ExNoPerm, "User %s is not allowed to submit mail", s.Name())
	}
	return nil
}

// Drop reads one maildrop stream from r and, when it passes every check,
// commits it to queue_directory/maildrop/, returning the file's name. It
// is what postdrop runs, and what sendmail runs in-process when its caller
// may write maildrop/ directly (root, mail_owner).
func Drop(cfg *config.Config, s Submitter, r io.Reader) (string, error) {
	if err := Authorize(cfg, s); err != nil {
		return "", err
	}
	limit, err := cfg.Size("message_size_limit")
	if err != nil {
		return "", fail(ExConfig, "%v", err)
	}
	dir := filepath.Join(cfg.Get("queue_directory"), queue.Maildrop)
	p, err := maildrop.Create(dir)
	if err != nil {
		return "", fail(ExTempFail, "%v", err)
	}
	ok := false
	defer func() {
		if !ok {
			p.Abort()
		}
	}()
	max := int64(maildrop.MaxEnvelope + maildrop.TrailerLen)
	if limit > 0 {
		max += limit
	} else {
		max = 1<<63 - 1
	}
	n, err := io.Copy(p, io.LimitReader(r, max))
	if err != nil {
		return "", fail(ExTempFail, "error writing queue file: %v", err)
	}
	if n == max {
		if _, err := r.Read(make([]byte, 1)); err != io.EOF {
			return "", fail(ExDataErr, "message file too big")
		}
	}
	f, err := maildrop.Read(p.File, n, limit)
	if err != nil {
		if errors.Is(err, maildrop.ErrFormat) {
			return "", fail(ExDataErr, "uid=%d: malformed input: %v", s.UID, err)
		}
		return "", fail(ExTempFail, "%v", err)
	}
	if !f.SenderGiven && f.Sender != s.Login {
		return "", fail(ExDataErr, "uid=%d: malformed input: sender %q is not the login name and -f was not given", s.UID, f.Sender)
	}
	if err := CheckSender(cfg, s, f.Sender); err != nil {
		return "", err
	}
	name, err := p.Commit()
	ok = true // Commit cleans up after itself
	if err != nil {
		return "", fail(ExTempFail, "%v", err)
	}
	return name, nil
}

// CheckSender applies local_login_sender_maps (postconf(5), Postfix 3.6+):
// the tables are searched by login name (or "uid:N" without one) and the
// first result lists the envelope senders allowed, "*" any, "<>" the null
// sender (empty_address_local_login_sender_maps_lookup_key), "@domain" any
// address in domain; an address extension in the sender is ignored.
func CheckSender(cfg *config.Config, s Submitter, sender string) error {
	specs, err := cfg.List("local_login_sender_maps")
	if err != nil {
		return fail(ExConfig, "%v", err)
	}
	key := s.Login
	if key == "" {
		key = "uid:" + strconv.Itoa(s.UID)
	}
	var allowed string
	found := false
	for _, spec := range specs {
		t, err := maps.Open(spec, maps.Options{Fold: true})
		if err != nil {
			return fail(ExConfig, "local_login_sender_maps: %v", err)
		}
		v, ok, err := t.Lookup(key)
		t.Close()
		if err != nil {
			return fail(ExTempFail, "%s table lookup error for '%s'", spec, key)
		}
		if ok {
			allowed, found = v, true
			break
		}
	}
	if found && senderAllowed(cfg, allowed, sender) {
		return nil
	}
	return fail(ExNoPerm, "not authorized to use sender='%s'", sender)
}

// senderAllowed matches sender against one lookup result's patterns.
func senderAllowed(cfg *config.Config, patterns, sender string) bool {
	nullKey := cfg.Get("empty_address_local_login_sender_maps_lookup_key")
	addr := strings.ToLower(stripExtension(sender, cfg.Get("recipient_delimiter")))
	for _, p := range strings.FieldsFunc(patterns, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		switch {
		case p == "*":
			return true
		case p == nullKey:
			if sender == "" {
				return true
			}
		case strings.HasPrefix(p, "@"):
			if i := strings.LastIndexByte(addr, '@'); i >= 0 && addr[i:] == strings.ToLower(p) {
				return true
			}
		case sender != "" && strings.ToLower(p) == addr:
			return true
		}
	}
	return false
}

// stripExtension removes an address extension (user+ext@domain → user@domain)
// given recipient_delimiter's characters.
func stripExtension(addr, delims string) string {
	if delims == "" {
		return addr
	}
	local, domain, hasAt := strings.Cut(addr, "@")
	if i := strings.IndexAny(local, delims); i > 0 {
		local = local[:i]
	}
	if hasAt {
		return local + "@" + domain
	}
	return local
}

// TrustedConfigDir decides whether a set-group-ID postdrop may read its
// configuration from dir: only when dir and its main.cf belong to root and
// are not writable by group or others. Otherwise a user could point
// MAIL_CONFIG or -c at a main.cf of their own whose queue_directory names
// a directory of the postdrop group's, and write there with its privilege.
// Postfix instead requires such directories to be listed in the default
// main.cf's alternate_config_directories; moat's rule needs no list and
// still admits every directory an admin made.
func TrustedConfigDir(dir string) error {
	for _, p := range []string{dir, filepath.Join(dir, "main.cf")} {
		st, err := os.Stat(p)
		if err != nil {
			return fail(ExConfig, "%v", err)
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok || sys.Uid != 0 {
			return fail(ExConfig, "%s is not owned by root: refusing it as a configuration for the set-group-ID postdrop", p)
		}
		if st.Mode().Perm()&0o022 != 0 {
			return fail(ExConfig, "%s is writable by group or others: refusing it as a configuration for the set-group-ID postdrop", p)
		}
	}
	return nil
}
