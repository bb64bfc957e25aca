package config

import (
	"os/user"
	"strconv"
)

// MailOwnerUID resolves mail_owner (postconf(5)) to its uid: the account
// that owns the queue and that lookup tables may belong to besides root.
// A numeric mail_owner is taken as a uid. ok is false when the account
// does not exist; `postfix check` reports that case, callers here simply
// trust no extra owner.
func (c *Config) MailOwnerUID() (uid int, ok bool) {
	name := c.Get("mail_owner")
	if name == "" {
		return 0, false
	}
	if u, err := user.Lookup(name); err == nil {
		n, err := strconv.Atoi(u.Uid)
		return n, err == nil
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, true
	}
	return 0, false
}
