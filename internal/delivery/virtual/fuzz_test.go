package virtual

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzMailboxPath: a virtual_mailbox_maps value either is refused or
// names a path strictly inside virtual_mailbox_base, keeping the trailing
// "/" that chooses Maildir.
func FuzzMailboxPath(f *testing.F) {
	for _, s := range []string{"example.com/alice/", "example.com/bob", "../etc/passwd", "a/../../b", "/abs/x", "./", "a//b/", "..", "a/..", ".../x"} {
		f.Add(s)
	}
	a := &Agent{base: "/var/vmail"}
	f.Fuzz(func(t *testing.T, v string) {
		p, err := a.mailboxPath(v)
		if err != nil {
			return
		}
		rel, rerr := filepath.Rel(a.base, p)
		if rerr != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || strings.ContainsRune(p, 0) {
			t.Fatalf("%q → %q escapes %s", v, p, a.base)
		}
		if strings.HasSuffix(v, "/") != strings.HasSuffix(p, "/") {
			t.Fatalf("%q → %q changed the mailbox kind", v, p)
		}
	})
}

// FuzzParseLocks: a lock list parses to the methods it names, or fails.
func FuzzParseLocks(f *testing.F) {
	for _, s := range []string{"fcntl, dotlock", "flock", "", "FCNTL dotlock,flock", "bogus"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		l, err := parseLocks("virtual_mailbox_lock", v)
		if err != nil {
			return
		}
		low := strings.ToLower(v)
		if l.fcntl != strings.Contains(low, "fcntl") || l.flock != strings.Contains(low, "flock") || l.dotlock != strings.Contains(low, "dotlock") {
			t.Fatalf("%q → %+v", v, l)
		}
	})
}
