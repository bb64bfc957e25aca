package queue

import (
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// TestMaildropMode: with a maildrop group, Open(Create) makes maildrop/
// 1730 owner:group (turning an old 0700 one into that), Open without
// Create accepts that or the stricter 0700, and refuses anything looser.
func TestMaildropMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give maildrop/ to a group")
	}
	g, err := user.LookupGroup("postdrop")
	if err != nil {
		t.Skip("no postdrop group")
	}
	gid, _ := strconv.Atoi(g.Gid)
	dir := filepath.Join(t.TempDir(), "spool")
	opts := Options{Create: true, MaildropGroup: gid, MaildropGroupSet: true}
	if _, err := Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, Maildrop)
	check := func() {
		t.Helper()
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != fs.ModeDir|fs.ModeSticky|0o730 || int(st.Sys().(*syscall.Stat_t).Gid) != gid {
			t.Fatalf("maildrop/ is %v group %d", st.Mode(), st.Sys().(*syscall.Stat_t).Gid)
		}
	}
	check()
	os.Chmod(p, 0o700)
	if _, err := Open(dir, Options{MaildropGroup: gid, MaildropGroupSet: true}); err != nil {
		t.Errorf("0700 refused: %v", err)
	}
	if _, err := Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	check()
	os.Chmod(p, 0o1733)
	if _, err := Open(dir, Options{MaildropGroup: gid, MaildropGroupSet: true}); err == nil {
		t.Error("a world-writable maildrop/ was accepted")
	}
	// Without a group, the old rule holds: 0700.
	if _, err := Open(filepath.Join(t.TempDir(), "q2"), Options{Create: true}); err != nil {
		t.Fatal(err)
	}
}
