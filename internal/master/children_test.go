package master

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// childScript writes a stand-in child: a shell script that says ready on
// fd 3 (as RunChild does) and then runs body.
func childScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "child.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho ready >&3\nexec 3>&-\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// runChildren runs a children-mode master on f for d, then stops it.
func runChildren(t *testing.T, f *fixture, exe string, d time.Duration) error {
	t.Helper()
	opts := f.opts()
	opts.Children, opts.Executable = true, exe
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d + 20*time.Second):
		t.Fatal("master did not stop")
		return nil
	}
}

// TestChildKeepsDying: a child that exits right after start-up is
// restarted with a doubling back-off, with master(8)'s warnings, never in
// a hot loop.
func TestChildKeepsDying(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "127.0.0.1:0 inet n - n - - smtpd\n")
	if err := runChildren(t, f, childScript(t, "exit 1"), 3500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	log := f.waitLog("terminating on signal")
	exits := regexp.MustCompile(`warning: process \S+/smtpd pid \d+ exit status 1`).FindAllString(log, -1)
	// Start, then restarts after 1 s and 2 s more: at most three exits
	// in 3.5 s (a hot loop would make hundreds).
	if len(exits) < 2 || len(exits) > 3 {
		t.Errorf("%d exits in 3.5 s, want 2 or 3 (back-off 1 s, 2 s):\n%s", len(exits), log)
	}
	if !strings.Contains(log, "/smtpd: bad command startup -- throttling") {
		t.Errorf("no throttling warning:\n%s", log)
	}
}

// TestChildStartFailure: a child that cannot start (it reports why on
// its readiness pipe) makes the master's start fail with that reason.
func TestChildStartFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "127.0.0.1:0 inet n - n - - smtpd\n")
	p := filepath.Join(t.TempDir(), "child.sh")
	os.WriteFile(p, []byte("#!/bin/sh\necho 'table hash:/nowhere: no such file' >&3\nexit 1\n"), 0o755)
	err := runChildren(t, f, p, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "table hash:/nowhere: no such file") {
		t.Fatalf("start error %v, want the child's reason", err)
	}
}

// TestChildStopped: children that serve until signalled are stopped with
// the master, and the unknown-command check names the master.cf line.
func TestChildStopped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "", "127.0.0.1:0 inet n - n - - smtpd\nfoo unix - - n - - frobnicate\n")
	err := runChildren(t, f, childScript(t, "sleep 30"), time.Second)
	if err == nil || !strings.Contains(err.Error(), `line 2: service foo/unix: unknown command "frobnicate"`) {
		t.Fatalf("start error %v, want the unknown command named with its line", err)
	}
	f.write("master.cf", "127.0.0.1:0 inet n - n - - smtpd\n")
	start := time.Now()
	if err := runChildren(t, f, childScript(t, "trap 'exit 0' TERM\nwhile :; do sleep 0.1; done"), time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v", d)
	}
}

// TestUnprivilegedLocalRefused: a local row with unpriv y would make the
// delivery executor write every mailbox as mail_owner; a root master
// refuses it, naming the line.
func TestUnprivilegedLocalRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only a root master refuses it")
	}
	t.Parallel()
	f := newFixture(t, "", "127.0.0.1:0 inet n - n - - smtpd\nlocal unix - y n - - local\n")
	err := runChildren(t, f, childScript(t, "sleep 30"), time.Second)
	if err == nil || !strings.Contains(err.Error(), "line 2: service local/unix: the local delivery service must run as root") {
		t.Fatalf("start error %v, want the local row refused", err)
	}
}
