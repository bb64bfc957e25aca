package confedit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// editFile reads path, transforms it with fn and replaces it atomically: a
// temporary file in the same directory is written, given the original's
// mode and owner, fsynced and renamed over the original, and the directory
// is fsynced so that the rename itself survives a crash. Until the rename
// the original is untouched, so any failure leaves it intact.
//
// beforeRename, when not nil, runs just before the rename; tests use it to
// simulate a failure at the last moment.
func editFile(path string, fn func([]byte) ([]byte, error), beforeRename func(tmp string) error) error {
	// Edit the file a symlink points to rather than replacing the link.
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("edit %s: %w", path, err)
	}
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
	if err := replace(real, out, fi, beforeRename); err != nil {
		return fmt.Errorf("edit %s: %w", path, err)
	}
	return nil
}

// replace writes data to a temporary file beside path and renames it over
// path, keeping fi's permission bits and owner.
func replace(path string, data []byte, fi os.FileInfo, beforeRename func(string) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(fi.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err = tmp.Chown(int(st.Uid), int(st.Gid)); err != nil {
			// Without the right to give the file its owner back, the
			// rename would silently change who owns main.cf.
			return fmt.Errorf("keep owner %d:%d: %w", st.Uid, st.Gid, err)
		}
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if beforeRename != nil {
		if err = beforeRename(name); err != nil {
			return err
		}
	}
	if err = os.Rename(name, path); err != nil {
		return err
	}
	d, derr := os.Open(dir)
	if derr != nil {
		return fmt.Errorf("renamed, but sync directory: %w", derr)
	}
	defer d.Close()
	if derr := d.Sync(); derr != nil && !errors.Is(derr, syscall.EINVAL) {
		return fmt.Errorf("renamed, but sync directory: %w", derr)
	}
	return nil
}
