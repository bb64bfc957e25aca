package confedit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseAssignment(t *testing.T) {
	for _, c := range []struct{ in, name, value, err string }{
		{in: "a=b", name: "a", value: "b"},
		{in: "  a \t=  b c  ", name: "a", value: "b c"},
		{in: "a=", name: "a", value: ""},
		{in: "a=b=c", name: "a", value: "b=c"},
		{in: "a", err: `missing '=' after attribute name: "a"`},
		{in: "=b", err: `missing attribute name: "=b"`},
		{in: "a b=c", err: `missing '=' after attribute name: "a b=c"`},
		{in: "a=1\nb=2", err: "multi-line"},
	} {
		got, err := ParseAssignment(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got.Name != c.name || got.Value != c.value {
			t.Errorf("%q: got %+v, %v", c.in, got, err)
		}
	}
}

func TestEdits(t *testing.T) {
	in := "a = 1\n  cont\n# note\nb = 2\n"
	out, err := EditSet([]byte(in), []string{"a=9", "z=1", "a=8"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "a = 8\n# note\nb = 2\nz = 1\n"; string(out) != want {
		t.Errorf("EditSet: %q, want %q", out, want)
	}
	out, _ = EditRemove([]byte(in), []string{"a", "a", "nosuch"})
	if want := "# note\nb = 2\n"; string(out) != want {
		t.Errorf("EditRemove: %q, want %q", out, want)
	}
	out, _ = EditComment([]byte(in), []string{"a"})
	if want := "#a = 1\n#  cont\n# note\nb = 2\n"; string(out) != want {
		t.Errorf("EditComment: %q, want %q", out, want)
	}
	if _, err := EditSet([]byte(in), nil); err == nil {
		t.Error("EditSet with nothing to set: no error")
	}
}

// TestKeepsModeAndOwner checks that the replaced file keeps the original's
// permission bits and owner.
func TestKeepsModeAndOwner(t *testing.T) {
	main := filepath.Join(t.TempDir(), "main.cf")
	if err := os.WriteFile(main, []byte("a = 1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(main, 0o640); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(main, 1, 2); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.Stat(main)
	if err := Set(main, []string{"a=2"}); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(main)
	if err != nil {
		t.Fatal(err)
	}
	if after.Mode() != before.Mode() {
		t.Errorf("mode %v, was %v", after.Mode(), before.Mode())
	}
	b, a := before.Sys().(*syscall.Stat_t), after.Sys().(*syscall.Stat_t)
	if a.Uid != b.Uid || a.Gid != b.Gid {
		t.Errorf("owner %d:%d, was %d:%d", a.Uid, a.Gid, b.Uid, b.Gid)
	}
	if os.SameFile(before, after) {
		t.Error("file was rewritten in place, not replaced by rename")
	}
	entries, _ := os.ReadDir(filepath.Dir(main))
	if len(entries) != 1 {
		t.Errorf("left files behind: %v", entries)
	}
}

// TestAtomic checks that a failure at the last moment before the rename
// leaves the original file intact and no temporary file behind.
func TestAtomic(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "main.cf")
	const orig = "a = 1\n  cont\nb = 2\n"
	if err := os.WriteFile(main, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("simulated crash")
	var sawTmp string
	err := editFile(main, func(b []byte) ([]byte, error) { return EditSet(b, []string{"a=2"}) },
		func(tmp string) error {
			sawTmp = tmp
			data, err := os.ReadFile(tmp)
			if err != nil || string(data) != "a = 2\nb = 2\n" {
				t.Errorf("temporary file %q, %v", data, err)
			}
			if filepath.Dir(tmp) != dir {
				t.Errorf("temporary file %s not in the same directory", tmp)
			}
			return boom
		})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want %v", err, boom)
	}
	if data, _ := os.ReadFile(main); string(data) != orig {
		t.Errorf("original changed to %q", data)
	}
	if _, err := os.Stat(sawTmp); !os.IsNotExist(err) {
		t.Errorf("temporary file %s left behind: %v", sawTmp, err)
	}
	// A transform error writes nothing either.
	if err := Set(main, []string{"bad"}); err == nil {
		t.Error("bad assignment accepted")
	}
	if data, _ := os.ReadFile(main); string(data) != orig {
		t.Errorf("original changed to %q", data)
	}
	// A missing file is an error, as with Postfix, not a new file.
	if err := Set(filepath.Join(dir, "absent.cf"), []string{"a=1"}); err == nil {
		t.Error("missing main.cf: no error")
	}
}

// TestSymlink checks that the file a symlink points to is edited and the
// link kept.
func TestSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.cf")
	link := filepath.Join(dir, "main.cf")
	if err := os.WriteFile(target, []byte("a = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.cf", link); err != nil {
		t.Fatal(err)
	}
	if err := Remove(link, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("link replaced: %v %v", fi, err)
	}
	if data, _ := os.ReadFile(target); len(data) != 0 {
		t.Errorf("target %q, want empty", data)
	}
}

// TestConcurrent checks that simultaneous edits do not lose each other's
// changes: each editor holds the lock on main.cf.tmp while it reads,
// edits and renames.
func TestConcurrent(t *testing.T) {
	main := filepath.Join(t.TempDir(), "main.cf")
	if err := os.WriteFile(main, []byte("# start\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() { errs <- Set(main, []string{fmt.Sprintf("p%d=%d", i, i)}) }()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if !strings.Contains(string(data), fmt.Sprintf("p%d = %d\n", i, i)) {
			t.Errorf("p%d lost:\n%s", i, data)
		}
	}
}
