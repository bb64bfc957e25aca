package postmap

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"moat/internal/cli"
)

func runIn(t *testing.T, dir string, args ...string) (string, int) {
	t.Helper()
	cf := t.TempDir()
	if err := os.WriteFile(filepath.Join(cf, "main.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	var out bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	st := Main(env, "postmap", append([]string{"-c", cf}, args...))
	return out.String(), st
}

func owner(t *testing.T, path string) (uid, gid int, perm os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid), fi.Mode().Perm()
}

// TestIndexOwnerAndMode checks the index gets what postmap(1) gives it:
// the source's owner (postmap runs as that user) unless -o, the source's
// permissions without group/other write unless -p, and an existing index
// keeps its own.
func TestIndexOwnerAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create files owned by another user")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	write := func(name string, mode os.FileMode, uid int) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("a b\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name      string
		mode      os.FileMode
		uid       int
		flags     []string
		wantUID   int
		wantPerm  os.FileMode
		wantError string
	}{
		{"user640", 0o640, 1000, nil, 1000, 0o640, ""},
		{"user666", 0o666, 1000, nil, 1000, 0o644, ""},
		{"user755", 0o755, 1000, nil, 1000, 0o644, ""},
		{"user600p", 0o600, 1000, []string{"-p"}, 1000, 0o644, ""},
		{"user600o", 0o600, 1000, []string{"-o"}, 0, 0o600, ""},
		{"root600", 0o600, 0, nil, 0, 0o600, ""},
	} {
		write(c.name, c.mode, c.uid)
		out, st := runIn(t, dir, append(c.flags, c.name)...)
		if st != 0 {
			t.Errorf("%s: status %d: %s", c.name, st, out)
			continue
		}
		uid, gid, perm := owner(t, filepath.Join(dir, c.name+".db"))
		if uid != c.wantUID || gid != c.wantUID || perm != c.wantPerm {
			t.Errorf("%s: index %d:%d %04o, want %d:%d %04o", c.name, uid, gid, perm, c.wantUID, c.wantUID, c.wantPerm)
		}
	}
	// An existing index keeps its mode when rebuilt.
	if err := os.Chmod(filepath.Join(dir, "user640.db"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, st := runIn(t, dir, "user640"); st != 0 {
		t.Fatalf("rebuild: %d %s", st, out)
	}
	if _, _, perm := owner(t, filepath.Join(dir, "user640.db")); perm != 0o600 {
		t.Errorf("rebuilt index mode %04o, want 0600", perm)
	}
	// A user who cannot write the directory cannot get an index built for
	// them (Postfix's postmap would be running as that user).
	locked := t.TempDir()
	if err := os.Chmod(locked, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(locked, "src")
	if err := os.WriteFile(p, []byte("a b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	out, st := runIn(t, locked, "src")
	if st != 1 || out != "postmap: fatal: open database src.db: Permission denied\n" {
		t.Errorf("locked dir: status %d, %q", st, out)
	}
	if out, st := runIn(t, locked, "-o", "src"); st != 0 {
		t.Errorf("-o in locked dir: status %d, %q", st, out)
	}
}
