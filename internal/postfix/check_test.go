package postfix

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/cli"
	"moat/internal/maps"
	"moat/internal/queue"
)

// Test accounts: a dedicated mail_owner and setgid_group, as Postfix's
// INSTALL asks for, in private passwd/group files so the tests do not
// depend on the host's accounts.
const (
	testUID   = 4242
	testGID   = 4242
	testGroup = 4243
)

const testPasswd = "root:x:0:0:root:/root:/bin/bash\n" +
	"moat:x:4242:4242::/nonexistent:/usr/sbin/nologin\n" +
	"shelly:x:4244:4244::/home/shelly:/bin/bash\n"

const testGroups = "root:x:0:\nmoat:x:4242:\nmoatdrop:x:4243:\n"

// fixture is a clean configuration: main.cf, master.cf, a queue and two
// tables, which `postfix check` must pass silently.
type fixture struct {
	t                   *testing.T
	root, conf, q       string
	passwd, group       string
	mainExtra, master   string
	header, access      string
	headerPath, accPath string
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("owner checks need root (CI runs as root)")
	}
}

func newFixture(t *testing.T) *fixture {
	needRoot(t)
	root := t.TempDir()
	f := &fixture{t: t, root: root, conf: filepath.Join(root, "etc"), q: filepath.Join(root, "spool")}
	f.passwd = filepath.Join(root, "passwd")
	f.group = filepath.Join(root, "group")
	f.headerPath = filepath.Join(f.conf, "header_checks")
	f.accPath = filepath.Join(f.conf, "access")
	f.master = "smtp inet n - n - - smtpd\n  -o smtpd_helo_required=yes\n"
	f.header = "/^Subject: spam/ REJECT\n"
	f.access = "example.com REJECT\n"
	return f
}

func (f *fixture) write(path, data string, mode os.FileMode) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		f.t.Fatal(err)
	}
}

// build writes the files; tests change fields (or files) in between.
func (f *fixture) build() {
	f.t.Helper()
	f.write(f.passwd, testPasswd, 0o644)
	f.write(f.group, testGroups, 0o644)
	main := fmt.Sprintf("queue_directory = %s\nmail_owner = moat\nsetgid_group = moatdrop\n"+
		"header_checks = regexp:%s\n"+
		"smtpd_recipient_restrictions = check_recipient_access texthash:%s,\n"+
		"    check_policy_service unix:private/policy, reject_unauth_destination\n%s",
		f.q, f.headerPath, f.accPath, f.mainExtra)
	f.write(filepath.Join(f.conf, "main.cf"), main, 0o644)
	f.write(filepath.Join(f.conf, "master.cf"), f.master, 0o644)
	f.write(f.headerPath, f.header, 0o644)
	f.write(f.accPath, f.access, 0o644)
	if err := os.Mkdir(f.q, 0o755); err != nil && !os.IsExist(err) {
		f.t.Fatal(err)
	}
	if _, err := queue.Open(f.q, queue.Options{Create: true, HashQueues: []string{"deferred"}, HashDepth: 1}); err != nil {
		f.t.Fatal(err)
	}
	err := filepath.WalkDir(f.q, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == f.q {
			return err
		}
		return os.Chown(p, testUID, testGID)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// run runs the check as root would and returns its output and status.
func (f *fixture) run() (string, int) {
	f.t.Helper()
	probs := Check(f.conf, Options{Dir: f.root, Passwd: f.passwd, Group: f.group, EuidSet: true})
	var out bytes.Buffer
	st := Report(&cli.Env{Stderr: &out, Stdout: &out}, "postfix", probs)
	return strings.ReplaceAll(out.String(), f.root, "ROOT"), st
}

func TestCheckClean(t *testing.T) {
	f := newFixture(t)
	f.build()
	out, st := f.run()
	if out != "" || st != 0 {
		t.Fatalf("clean configuration: status %d, output:\n%s", st, out)
	}
}

func TestCheckProblems(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	cases := []struct {
		name   string
		setup  func(f *fixture)
		after  func(f *fixture)
		status int
		want   string
	}{}
	_ = old
	_ = maps.Types
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			f.build()
			if tc.after != nil {
				tc.after(f)
			}
			out, st := f.run()
			if out != tc.want || st != tc.status {
				t.Errorf("status %d, want %d; output:\n%s\nwant:\n%s", st, tc.status, out, tc.want)
			}
		})
	}
}
