package postfix

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/cli"
	"moat/internal/privsep"
	"moat/internal/queue"
	"moat/internal/testutil"
	"moat/internal/tlsconf/tlsconftest"
)

func runMain(args ...string) (string, int) {
	var out bytes.Buffer
	env := &cli.Env{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	st := Main(env, "postfix", args)
	return out.String(), st
}

func TestMainCommands(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"abort"}, "postfix: fatal: abort: not available yet in this version of moat\n"},
		{[]string{"-c", "/nonexistent", "-v", "flush"}, "postfix: fatal: flush: not available yet in this version of moat\n"},
		{[]string{"-c", "/nonexistent", "-v", "reload"}, "postfix: fatal: open /nonexistent/main.cf: No such file or directory\n"},
		{[]string{"status", "extra"}, "postfix: fatal: usage: postfix [-c config_dir] [-Dv] command\n"},
		{[]string{"-D", "set-permissions"}, "postfix: fatal: set-permissions: not available yet in this version of moat\n"},
		{[]string{"bogus"}, "postfix/postfix-script: fatal: unknown command: 'bogus'. Usage: postfix start (or stop, reload, abort, flush, check, status, set-permissions, upgrade-configuration)\n"},
		{nil, "postfix: fatal: usage: postfix [-c config_dir] [-Dv] command\n"},
		{[]string{"-x", "check"}, "postfix: invalid option -- 'x'\npostfix: fatal: usage: postfix [-c config_dir] [-Dv] command\n"},
		{[]string{"-c", "/nonexistent", "check"}, "postfix: fatal: open /nonexistent/main.cf: No such file or directory\n"},
		{[]string{"check", "extra"}, "postfix: fatal: usage: postfix [-c config_dir] [-Dv] command\n"},
	}
	for _, tc := range cases {
		out, st := runMain(tc.args...)
		if st != 1 || out != tc.want {
			t.Errorf("postfix %q: status %d, output %q, want 1, %q", tc.args, st, out, tc.want)
		}
	}
}

// TestExamplesDev is the end-to-end check: the repository's development
// configuration passes once its queue exists. examples/dev names
// ./var/spool, relative to the directory moat runs from (the repository
// root for `make run`), so the test copies the configuration and runs
// from the copy's root.
func TestExamplesDev(t *testing.T) {
	needRoot(t)
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Skip(err)
	}
	var owner *privsep.PasswdEntry
	for _, a := range privsep.ParsePasswd(data) {
		if a.Name == "postfix" {
			owner = &a
		}
	}
	if owner == nil {
		t.Skip("no postfix account (mail_owner's default) on this host")
	}
	src := filepath.Join(testutil.RepoRoot(t), "examples", "dev")
	root := t.TempDir()
	dst := filepath.Join(root, "examples", "dev")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"main.cf", "master.cf", "aliases"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(root)

	out, st := runMain("-c", "examples/dev", "check")
	if st != 1 || !strings.Contains(out, "queue_directory "+filepath.Join(root, "examples/dev")+"/../../var/spool: no such file or directory") {
		t.Fatalf("without a queue: status %d, output:\n%s", st, out)
	}

	q := filepath.Join(root, "var", "spool")
	if err := os.MkdirAll(q, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.Open(q, queue.Options{Create: true, HashQueues: []string{"deferred"}, HashDepth: 1}); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(q, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == q {
			return err
		}
		return os.Chown(p, owner.UID, owner.GID)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Check builds each smtpd service's TLS settings, as its start would:
	// without make run's certificates the TLS services are refused.
	if out, st := runMain("-c", "examples/dev", "check"); st != 1 || !strings.Contains(out, "service 127.0.0.1:2587/inet: smtpd_tls_") {
		t.Fatalf("without certificates: status %d, output:\n%s", st, out)
	}
	tdir := filepath.Join(root, "var", "tls")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		kind tlsconftest.Kind
	}{{"rsa", tlsconftest.RSA}, {"ec", tlsconftest.ECDSA}} {
		cert := tlsconftest.New(t, tdir, c.name, "mx.moat.test", c.kind, nil, false)
		if err := os.Rename(cert.CertFile, filepath.Join(tdir, c.name+".pem")); err != nil {
			t.Fatal(err)
		}
	}
	if out, st := runMain("-c", "examples/dev", "check"); st != 0 || out != "" {
		t.Fatalf("examples/dev: status %d, output:\n%s", st, out)
	}
}
