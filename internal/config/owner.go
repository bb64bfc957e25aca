package config

import (
	"os/user"
	"strconv"
)

// MailOwnerUID resolves mail_owner (postconf(5)) to its uid: the account
// that owns the queue and that lookup tables may belong to besides root.
// Like Postfix (and internal/privsep), a numeric mail_owner is not taken
// as a uid: it must name an account. ok is false when the account does
// not exist; `postfix check` reports that case, callers here simply trust
// no extra owner.
func (c *Config) MailOwnerUID() (uid int, ok bool) {
	name := c.Get("mail_owner")
	if name == "" {
		return 0, false
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(u.Uid)
	return n, err == nil
}
