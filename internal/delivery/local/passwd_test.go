package local

import (
	"os"
	"path/filepath"
	"testing"
)

// The passwd cache answers from the parsed file until the file is
// replaced, as useradd does, and then sees the new account.
func TestPasswdCache(t *testing.T) {
	p := filepath.Join(t.TempDir(), "passwd")
	write := func(text string) {
		tmp := p + ".new"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil { // a new inode, as useradd writes it
			t.Fatal(err)
		}
	}
	write("root:x:0:0:root:/root:/bin/bash\nann:x:1001:100::/home/ann:/bin/sh\n")
	c := newPasswdCache(p)
	a, err := c.lookupUser("ann")
	if err != nil || a == nil || a.uid != 1001 || a.gid != 100 || a.home != "/home/ann" || a.shell != "/bin/sh" {
		t.Fatalf("ann = %+v, %v", a, err)
	}
	if b, err := c.lookupUser("bob"); err != nil || b != nil {
		t.Fatalf("bob before useradd = %+v, %v", b, err)
	}
	write("root:x:0:0:root:/root:/bin/bash\nann:x:1001:100::/home/ann:/bin/sh\nbob:x:1002:100::/home/bob:/bin/sh\n")
	if b, err := c.lookupUser("bob"); err != nil || b == nil || b.uid != 1002 {
		t.Fatalf("bob after useradd = %+v, %v", b, err)
	}
	if r, err := c.lookupUID(0); err != nil || r == nil || r.name != "root" {
		t.Fatalf("uid 0 = %+v, %v", r, err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := c.lookupUser("ann"); err == nil {
		t.Error("a missing passwd file must be an error (the mail is deferred), not an unknown user")
	}
}
