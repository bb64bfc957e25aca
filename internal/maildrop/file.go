package maildrop

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Names in maildrop/: a file being written is "t.HEX" (pickup skips it,
// and removes it once it is older than StaleAge: its writer died), a
// finished one "HEX" (TIME in hex microseconds, then random bits, so that
// a readdir order is roughly arrival order and names cannot be guessed by
// other users; the 1730 directory already hides them from listing).
const (
	tempPrefix = "t."
	nameLen    = 16 + 16
	// StaleAge is how old a temporary file must be before pickup takes its
	// writer for dead and removes it.
	StaleAge = time.Hour
)

// IsFinal reports whether a maildrop/ entry name is a finished file.
func IsFinal(name string) bool {
	if len(name) != nameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// IsTemp reports whether a maildrop/ entry name is a file being written.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, tempPrefix) && IsFinal(name[len(tempPrefix):])
}

// Pending is a maildrop file being written under its temporary name.
type Pending struct {
	*os.File
	dir, name string
	done      bool
}

// Create opens a new temporary file in dir (queue_directory/maildrop), mode
// 0644: the 1730 directory is what keeps other users out (they can neither
// list it nor, not knowing the name, open the file), while pickup, running
// as mail_owner, must be able to read a file another user owns.
func Create(dir string) (*Pending, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	name := strings.ToUpper(fmt.Sprintf("%016x%s", time.Now().UnixMicro(), hex.EncodeToString(rnd[:])))
	p := filepath.Join(dir, tempPrefix+name)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create file %s: %w", p, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(p)
		return nil, fmt.Errorf("chmod %s: %w", p, err)
	}
	return &Pending{File: f, dir: dir, name: name}, nil
}

// Commit makes the file durable and visible to pickup: fsync, rename to
// its final name, fsync the directory. It returns the final name.
func (p *Pending) Commit() (string, error) {
	if p.done {
		return "", fmt.Errorf("maildrop: %s already finished", p.name)
	}
	p.done = true
	tmp := filepath.Join(p.dir, tempPrefix+p.name)
	if err := p.File.Sync(); err != nil {
		p.File.Close()
		os.Remove(tmp)
		return "", fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := p.File.Close(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(p.dir, p.name)); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("rename %s: %w", tmp, err)
	}
	if err := syncDir(p.dir); err != nil {
		return "", err
	}
	return p.name, nil
}

// Abort removes the unfinished file.
func (p *Pending) Abort() {
	if p.done {
		return
	}
	p.done = true
	p.File.Close()
	os.Remove(filepath.Join(p.dir, tempPrefix+p.name))
}

// syncDir fsyncs a directory. maildrop/ is mode 1730: its group (postdrop)
// may not read it, and open(O_RDONLY) of a directory needs read
// permission, so a setgid postdrop cannot open it; fsync of the file and
// the rename are then what it has (ext4 and xfs commit a rename in the
// journal together with the file's data under the default data=ordered).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		if os.IsPermission(err) {
			return nil
		}
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
