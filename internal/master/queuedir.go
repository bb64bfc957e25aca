package master

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"moat/internal/config"
	"moat/internal/queue"
)

// openQueue opens (creating what is missing) the queue directory. Started
// as root, the mail system's queue belongs to mail_owner (postfix check
// demands it, and issue 4's unprivileged roles will need it), but
// queue.Open creates directories as the caller; so directories it created
// as root are handed to mail_owner and Open is tried again, as Postfix's
// `postfix start` does with post-install's set-permissions. Each round
// fixes everything created so far; a round that fixes nothing returns
// Open's error.
func openQueue(dir string, opts queue.Options, cfg *config.Config) (*queue.Queue, error) {
	if os.Geteuid() != 0 {
		return queue.Open(dir, opts)
	}
	uid, ok := cfg.MailOwnerUID()
	if !ok || uid == 0 {
		return nil, fmt.Errorf("file %s: parameter mail_owner: %q is not an unprivileged account (postfix check says more)", cfg.Path, cfg.Get("mail_owner"))
	}
	opts.Owner, opts.OwnerSet = uid, true
	for range 512 {
		q, err := queue.Open(dir, opts)
		if err == nil {
			return q, nil
		}
		n, aerr := adoptDirs(dir, uid)
		if aerr != nil {
			return nil, errors.Join(err, aerr)
		}
		if n == 0 {
			return nil, err
		}
	}
	return nil, errors.New("queue: directories keep changing owner")
}

// adoptDirs gives root-owned directories under the queue directory to uid,
// except the queue directory itself and pid/, which stay root's as in
// Postfix. It returns how many it changed.
func adoptDirs(dir string, uid int) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p == dir {
			return nil
		}
		if p == filepath.Join(dir, "pid") {
			return fs.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
			if err := os.Lchown(p, uid, -1); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}
