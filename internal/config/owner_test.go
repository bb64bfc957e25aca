package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMailOwnerUID(t *testing.T) {
	for _, tc := range []struct {
		value string
		uid   int
		ok    bool
	}{
		{"root", 0, true},
		{"4242", 0, false}, // a uid is not an account name (Postfix, privsep)
		{"no-such-user-moat", 0, false},
		{"", 0, false},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("mail_owner = "+tc.value+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if uid, ok := c.MailOwnerUID(); uid != tc.uid || ok != tc.ok {
			t.Errorf("mail_owner = %q: got %d, %v; want %d, %v", tc.value, uid, ok, tc.uid, tc.ok)
		}
	}
}
