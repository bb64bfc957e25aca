package privsep

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the jail is root's; needs root (CI runs as root)")
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func TestPrepareJail(t *testing.T) {
	needRoot(t)
	jail := newJail(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "hosts"), "127.0.0.1 localhost\n", 0o600)
	writeFile(t, filepath.Join(src, "zone"), "TZif-ish\n", 0o644)
	if err := os.Symlink("zone", filepath.Join(src, "localtime")); err != nil {
		t.Fatal(err)
	}
	// A stale copy whose host file is gone must go too.
	if err := os.MkdirAll(filepath.Join(jail, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(jail, "etc", "resolv.conf"), "nameserver 192.0.2.1\n", 0o644)
	if err := prepareJail(jail, src); err != nil {
		t.Fatal(err)
	}
	check := func(name, want string) {
		t.Helper()
		p := filepath.Join(jail, "etc", name)
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(p)
		if string(data) != want || !st.Mode().IsRegular() || st.Mode().Perm() != 0o644 || ownerUID(st) != 0 {
			t.Errorf("%s: %q mode %v owner %d", name, data, st.Mode(), ownerUID(st))
		}
	}
	check("hosts", "127.0.0.1 localhost\n")
	check("localtime", "TZif-ish\n")
	if _, err := os.Lstat(filepath.Join(jail, "etc", "resolv.conf")); !os.IsNotExist(err) {
		t.Errorf("stale resolv.conf kept: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(jail, "etc"))
	if len(ents) != 2 {
		t.Errorf("jail etc/ holds %d entries, want 2 (no temporary files left)", len(ents))
	}

	// Idempotent: an unchanged file is not rewritten; a changed one is
	// replaced by rename (a new inode), never rewritten in place.
	before := inode(t, filepath.Join(jail, "etc", "hosts"))
	if err := prepareJail(jail, src); err != nil {
		t.Fatal(err)
	}
	if inode(t, filepath.Join(jail, "etc", "hosts")) != before {
		t.Error("unchanged hosts rewritten")
	}
	writeFile(t, filepath.Join(src, "hosts"), "127.0.0.1 localhost other\n", 0o644)
	if err := prepareJail(jail, src); err != nil {
		t.Fatal(err)
	}
	check("hosts", "127.0.0.1 localhost other\n")
	if inode(t, filepath.Join(jail, "etc", "hosts")) == before {
		t.Error("changed hosts rewritten in place")
	}
	// A copy someone made writable is put right.
	os.Chmod(filepath.Join(jail, "etc", "hosts"), 0o666)
	if err := prepareJail(jail, src); err != nil {
		t.Fatal(err)
	}
	check("hosts", "127.0.0.1 localhost other\n")
}

func TestPrepareJailRefuses(t *testing.T) {
	needRoot(t)
	src := t.TempDir()
	cases := []struct {
		name  string
		setup func(jail string)
		want  string
	}{
		{"etc symlink", func(jail string) { os.Symlink(t.TempDir(), filepath.Join(jail, "etc")) }, "etc is a symbolic link"},
		{"etc not root's", func(jail string) {
			os.Mkdir(filepath.Join(jail, "etc"), 0o755)
			os.Chown(filepath.Join(jail, "etc"), 4242, 4242)
		}, "is owned by uid 4242, not root"},
		{"queue writable", func(jail string) { os.Chmod(jail, 0o777) }, "writable by group or others: chmod go-w"},
		{"source fifo", func(jail string) { syscall.Mkfifo(filepath.Join(src, "services"), 0o644) }, "services is not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			jail := newJail(t)
			tc.setup(jail)
			err := prepareJail(jail, src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
			os.Remove(filepath.Join(src, "services"))
		})
	}
	if err := PrepareJail("relative/dir"); err == nil {
		t.Error("relative queue_directory accepted")
	}
}
