package maps

import (
	"fmt"
	"os"
	"slices"
	"syscall"
)

// openTableFile opens a table's source or index file after checking who may
// have written it. A lookup table decides who may relay and what is
// rejected, so a file that an unprivileged user could have changed is
// refused rather than trusted (the seed sets header_checks to mode 600).
func openTableFile(path string, opts Options) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := checkTrusted(f, path, opts); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func checkTrusted(f *os.File, path string, opts Options) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("table %s is writable by group or others (mode %04o): run chmod go-w %s", path, fi.Mode().Perm(), path)
	}
	uid := int(st.Uid)
	if uid != 0 && uid != os.Geteuid() && !slices.Contains(opts.TrustedUIDs, uid) {
		return fmt.Errorf("table %s is owned by uid %d, not root or mail_owner: run chown root %s", path, uid, path)
	}
	return nil
}
