package confedit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// editFile reads path, transforms it with fn and replaces it atomically.
//
// Like Postfix's edit_file(3), it writes to PATH.tmp, a fixed name that is
// also the lock: an editor opens it, takes an exclusive lock and checks
// that the name still refers to the file it locked (a previous editor may
// have renamed or removed it meanwhile). Only then is the original read, so
// two concurrent `postconf -e` runs cannot lose each other's changes. The
// temporary file gets the original's mode and owner, is fsynced and
// renamed over the original, and the directory is fsynced so the rename
// survives a crash. Until the rename the original is untouched, so any
// failure leaves it intact.
//
// beforeRename, when not nil, runs just before the rename; tests use it to
// simulate a failure at the last moment.
func editFile(path string, fn func([]byte) ([]byte, error), beforeRename func(tmp string) error) error {
	// Edit the file a symlink points to rather than replacing the link.
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("edit %s: %w", path, err)
	}
	tmpPath := real + ".tmp"
	tmp, err := lockTemp(tmpPath)
	if err != nil {
		return fmt.Errorf("edit %s: %w", path, err)
	}
	// Closing releases the lock; on failure the temporary file goes too.
	done := false
	defer func() {
		if !done {
			os.Remove(tmpPath)
		}
		tmp.Close()
	}()
	data, err := os.ReadFile(real)
	if err != nil {
		return fmt.Errorf("edit %s: %w", path, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return fmt.Errorf("edit %s: %w", path, err)
	}
	out, err := fn(data)
	if err != nil {
		return err
	}
	if err := fill(tmp, out, fi); err != nil {
		return fmt.Errorf("edit %s: write %s: %w", path, tmpPath, err)
	}
	if beforeRename != nil {
		if err := beforeRename(tmpPath); err != nil {
			return fmt.Errorf("edit %s: %w", path, err)
		}
	}
	if err := os.Rename(tmpPath, real); err != nil {
		return fmt.Errorf("edit %s: %w", path, err)
	}
	done = true
	if err := syncDir(filepath.Dir(real)); err != nil {
		return fmt.Errorf("edit %s: renamed, but sync directory: %w", path, err)
	}
	return nil
}

// lockTemp opens and exclusively locks the temporary file, retrying when
// another editor replaced or removed it while this one waited.
func lockTemp(tmpPath string) (*os.File, error) {
	for {
		f, err := os.OpenFile(tmpPath, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", tmpPath, err)
		}
		held, err1 := f.Stat()
		named, err2 := os.Stat(tmpPath)
		if err1 == nil && err2 == nil && os.SameFile(held, named) {
			return f, nil
		}
		f.Close()
		if err1 != nil {
			return nil, err1
		}
		if err2 != nil && !errors.Is(err2, os.ErrNotExist) {
			return nil, err2
		}
	}
}

// fill replaces the temporary file's content with data and gives it fi's
// permission bits and owner, then flushes it to disk.
func fill(tmp *os.File, data []byte, fi os.FileInfo) error {
	if err := tmp.Truncate(0); err != nil {
		return err
	}
	if _, err := tmp.WriteAt(data, 0); err != nil {
		return err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := tmp.Chown(int(st.Uid), int(st.Gid)); err != nil {
			// Without the right to give the file its owner back, the
			// rename would silently change who owns main.cf.
			return fmt.Errorf("keep owner %d:%d: %w", st.Uid, st.Gid, err)
		}
	}
	return tmp.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
