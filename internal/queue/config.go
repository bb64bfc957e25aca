package queue

import (
	"os/user"
	"strconv"

	"moat/internal/config"
)

// OptionsFromConfig returns the Options that main.cf implies: the hashed
// queues and their depth (postconf(5) hash_queue_names, hash_queue_depth).
// Every program that opens the queue must use the same ones, or it looks
// for messages in the wrong subdirectory. Owner and Create stay the
// caller's choice.
func OptionsFromConfig(cfg *config.Config) (Options, error) {
	var opts Options
	names, err := cfg.List("hash_queue_names")
	if err != nil {
		return opts, err
	}
	opts.HashQueues = names
	depth, err := cfg.Int("hash_queue_depth")
	if err != nil {
		return opts, err
	}
	opts.HashDepth = int(depth)
	// setgid_group opens maildrop/ to the set-group-ID postdrop; an
	// unknown group leaves it closed (postfix check reports the group).
	if g, err := user.LookupGroup(cfg.Get("setgid_group")); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil && gid > 0 {
			opts.MaildropGroup, opts.MaildropGroupSet = gid, true
		}
	}
	return opts, nil
}
