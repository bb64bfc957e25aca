package maps

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTablePermissions: a table file that someone other than root or
// mail_owner could have written is refused, for source-read tables
// (texthash) and index files alike; mail_owner's uid listed in
// Options.TrustedUIDs is accepted. Runs as root here and in CI.
func TestTablePermissions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away (CI runs as root)")
	}
	const mailOwner = 4242
	dir := t.TempDir()
	name := buildIndex(t, dir, "k v\n")
	files := map[string]string{"texthash:" + name: name, "hash:" + name: name + ".db"}
	for spec, file := range files {
		for _, mode := range []os.FileMode{0o664, 0o646, 0o666} {
			os.Chmod(file, mode)
			_, err := Open(spec, DefaultOptions())
			want := fmt.Sprintf("table %s is writable by group or others (mode %04o): run chmod go-w %s", file, mode, file)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s mode %04o: err = %v\nwant %s", spec, mode, err, want)
			}
		}
		os.Chmod(file, 0o644)
		if err := os.Chown(file, mailOwner, mailOwner); err != nil {
			t.Fatal(err)
		}
		_, err := Open(spec, DefaultOptions())
		want := fmt.Sprintf("table %s is owned by uid %d, not root or mail_owner: run chown root %s", file, mailOwner, file)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s owned by %d: err = %v\nwant %s", spec, mailOwner, err, want)
		}
		opts := DefaultOptions()
		opts.TrustedUIDs = []int{mailOwner}
		tbl, err := Open(spec, opts)
		if err != nil {
			t.Errorf("%s owned by mail_owner: %v", spec, err)
			continue
		}
		if v, ok, err := tbl.Lookup("k"); v != "v" || !ok || err != nil {
			t.Errorf("%s: Lookup = %q %v %v", spec, v, ok, err)
		}
		tbl.Close()
		os.Chown(file, 0, 0)
	}
	// A rebuilt index owned by a stranger is refused on reopen, too.
	opts := DefaultOptions()
	tbl, err := Open("hash:"+name, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	tbl.(*indexedTable).setRecheck(0)
	buildIndex(t, dir, "k new\n")
	os.Chown(name+".db", mailOwner, mailOwner)
	if _, _, err := tbl.Lookup("k"); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
		t.Errorf("reopened index owned by a stranger: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "table.db")); err != nil {
		t.Fatal(err)
	}
}
