package postqueue

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/queue"
)

// OpenQueue loads main.cf from cfgDir and opens the queue directory it names
// (postconf(5) queue_directory), with the hash_queue_names and
// hash_queue_depth that the writers used, so that the queue commands
// (postqueue, postsuper, postcat) find messages where smtpd and the
// scheduler put them. It never creates anything: a missing queue is an
// error, since these commands only inspect or move existing mail.
//
// The queue directories belong to mail_owner once the daemons drop
// privileges; when the super-user runs a command, the ownership check
// accepts mail_owner's uid as well as root's.
func OpenQueue(cfgDir string) (*queue.Queue, *config.Config, error) {
	cfg, err := config.Load(cfgDir)
	if err != nil {
		return nil, nil, err
	}
	q, err := openConfigured(cfg)
	if err != nil {
		return nil, nil, err
	}
	return q, cfg, nil
}

func openConfigured(cfg *config.Config) (*queue.Queue, error) {
	dir := cfg.Get("queue_directory")
	opts, err := queue.OptionsFromConfig(cfg)
	if err != nil {
		return nil, err
	}
	q, err := queue.Open(dir, opts)
	if err == nil || os.Geteuid() != 0 {
		return q, err
	}
	uid, ok := cfg.MailOwnerUID()
	if !ok {
		return nil, err
	}
	opts.Owner, opts.OwnerSet = uid, true
	q, err2 := queue.Open(dir, opts)
	if err2 != nil {
		return nil, err
	}
	return q, nil
}

// Identity is who runs a command: the real uid and its login name, which
// authorized_mailq_users and authorized_flush_users match.
type Identity struct {
	UID  int
	Name string
}

// Self returns the identity of the running process, from its real uid as
// Postfix's postqueue uses (getuid(2)), so a set-id wrapper cannot widen
// access.
func Self() Identity {
	uid := os.Getuid()
	id := Identity{UID: uid, Name: "unknown"}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		id.Name = u.Username
	}
	return id
}

// Authorized reports whether who may use the feature that parameter param
// guards (authorized_mailq_users, authorized_flush_users). The super-user
// and mail_owner are always allowed, as in Postfix's postqueue(1). The
// value is a Postfix string list (postconf(5) "authorized_mailq_users"):
// user names and type:table lookups, separated by commas or white space,
// a leading "!" negating an entry, the first match deciding, no match
// denying. The default static:anyone matches everyone.
func Authorized(cfg *config.Config, param string, who Identity) (bool, error) {
	if who.UID == 0 {
		return true, nil
	}
	if uid, ok := cfg.MailOwnerUID(); ok && uid == who.UID {
		return true, nil
	}
	list, err := cfg.List(param)
	if err != nil {
		return false, err
	}
	return matchList(list, who.Name, param)
}

func matchList(list []string, name, param string) (bool, error) {
	for _, pat := range list {
		neg := false
		for strings.HasPrefix(pat, "!") {
			neg = !neg
			pat = strings.TrimPrefix(pat, "!")
		}
		hit, err := matchOne(pat, name)
		if err != nil {
			return false, fmt.Errorf("%s: %w", param, err)
		}
		if hit {
			return !neg, nil
		}
	}
	return false, nil
}

// matchOne matches one string-list entry against a user name: a
// type:table entry matches when the table has the name as a key, anything
// else when it equals the name, case-insensitively as Postfix's
// string_list does.
func matchOne(pat, name string) (bool, error) {
	if strings.HasPrefix(pat, "/") {
		return false, fmt.Errorf("%s: file patterns are not supported: use a type:table lookup", pat)
	}
	if _, _, err := maps.Split(pat); err == nil {
		t, err := maps.Open(pat, maps.DefaultOptions())
		if err != nil {
			return false, err
		}
		defer t.Close()
		_, found, err := t.Lookup(name)
		if err != nil {
			return false, fmt.Errorf("%s: lookup %s: %w", pat, name, err)
		}
		return found, nil
	}
	return strings.EqualFold(pat, name), nil
}
