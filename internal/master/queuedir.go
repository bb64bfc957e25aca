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

// makeCacheDirs creates, before the privilege drop, the directories the
// unprivileged daemons keep caches in and cannot create themselves:
// today the MTA-STS policy cache (smtp_mta_sts_cache_directory, under
// data_directory by default), when smtp_mta_sts is on. Postfix's
// post-install makes data_directory for mail_owner the same way. Only
// missing directories are made (mode 0700, owned by mail_owner); an
// existing one is left as the admin set it, and postfix check warns
// when mail_owner does not own data_directory. A relative path is the
// agent's to resolve, in its own working directory.
func makeCacheDirs(cfg *config.Config, owner int) error {
	if on, _ := cfg.Bool("smtp_mta_sts"); !on {
		return nil
	}
	dir := cfg.Get("smtp_mta_sts_cache_directory")
	if !filepath.IsAbs(dir) {
		return nil
	}
	if os.Geteuid() != 0 {
		owner = -1 // every service runs as this user: nothing to give away
	}
	return makeOwnedDirs(filepath.Clean(dir), owner)
}

// makeOwnedDirs is os.MkdirAll giving each directory it creates to owner.
func makeOwnedDirs(dir string, owner int) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := makeOwnedDirs(parent, owner); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Lchown(dir, owner, -1); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}
