package test

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCheckRefusesUnsafePrivileges runs the real binary's `postfix check`
// as root on set-ups a privilege-separated mail system must refuse: a
// root mail_owner, and a queue directory mail_owner could rewrite (its
// jail's etc/ would then be theirs to forge).
func TestCheckRefusesUnsafePrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CI runs as root)")
	}
	pf, err := user.Lookup("postfix")
	if err != nil {
		t.Skip("no postfix account on this host")
	}
	if _, err := user.LookupGroup("postdrop"); err != nil {
		t.Skip("no postdrop group on this host")
	}
	uid, _ := strconv.Atoi(pf.Uid)
	cases := []struct {
		name, extra string
		setup       func(dir string)
		want        string
	}{
		{name: "root mail_owner", extra: "mail_owner = root\n",
			want: "parameter mail_owner: user root has privileged user ID: set mail_owner to a dedicated unprivileged account"},
		{name: "queue not root's", setup: func(dir string) {
			if err := os.Chown(filepath.Join(dir, "spool"), uid, -1); err != nil {
				t.Fatal(err)
			}
		}, want: "queue_directory DIR/spool is owned by uid " + pf.Uid + ", not root: chown root DIR/spool"},
		{name: "setgid_group is mail_owner's group", extra: "setgid_group = " + groupName(t, pf.Gid) + "\n",
			want: "has same group ID as mail_owner group ID: give setgid_group its own group"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mainCF := strings.ReplaceAll(baseMainCF+"mail_owner = postfix\nsetgid_group = postdrop\n"+tc.extra, "{{DIR}}", dir)
			if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte("smtp inet n - y - - smtpd\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "spool"), 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(dir)
			}
			out, err := exec.Command(moatBin, "postfix", "-c", dir, "check").CombinedOutput()
			got := strings.ReplaceAll(string(out), dir, "DIR")
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Errorf("exit %v, want status 1", err)
			}
			if !strings.Contains(got, "postfix: fatal: ") || !strings.Contains(got, tc.want) {
				t.Errorf("output:\n%s\nwant a fatal line with %q", got, tc.want)
			}
		})
	}
}

func groupName(t *testing.T, gid string) string {
	t.Helper()
	g, err := user.LookupGroupId(gid)
	if err != nil {
		t.Skipf("group %s: %v", gid, err)
	}
	return g.Name
}
