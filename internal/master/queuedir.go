package master

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"moat/internal/config"
	"moat/internal/postqueue"
	"moat/internal/queue"
)

// openQueue opens (creating what is missing) the queue directory, and the
// public/ directory where postqueue leaves flush requests. Started as root,
// the mail system's queue belongs to mail_owner (postfix check demands it,
// and issue 4's unprivileged roles will need it); queue.Open gives what it
// creates to the owner it is told.
func openQueue(dir string, opts queue.Options, cfg *config.Config) (*queue.Queue, error) {
	owner := os.Geteuid()
	if owner == 0 {
		uid, ok := cfg.MailOwnerUID()
		if !ok || uid == 0 {
			return nil, fmt.Errorf("file %s: parameter mail_owner: %q is not an unprivileged account (postfix check says more)", cfg.Path, cfg.Get("mail_owner"))
		}
		owner = uid
		opts.Owner, opts.OwnerSet = uid, true
	}
	q, err := queue.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	pub := filepath.Join(dir, postqueue.TriggerDir)
	if err := os.Mkdir(pub, 0o700); err == nil {
		if err := os.Lchown(pub, owner, -1); err != nil {
			return nil, fmt.Errorf("create %s: %w", pub, err)
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create %s: %w", pub, err)
	}
	return q, nil
}
