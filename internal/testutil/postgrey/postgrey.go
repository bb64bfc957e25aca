// Package postgrey starts Debian's postgrey(8), a real greylisting policy
// server (SMTPD_POLICY_README), for the tests of moat's policy client and
// of check_policy_service end to end.
package postgrey

import (
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Start runs postgrey on a free 127.0.0.1 port with its own database
// directory and a greylisting delay of delay seconds, and returns
// "host:port". It skips the test where postgrey or its account is missing
// or the test is not root (postgrey drops to its own account); t.Cleanup
// stops it and, if the test failed, logs what it printed.
func Start(t testing.TB, delay int) string {
	t.Helper()
	bin, err := exec.LookPath("postgrey")
	if err != nil {
		bin = "/usr/sbin/postgrey"
		if _, err := os.Stat(bin); err != nil {
			t.Skip("postgrey is not installed (Debian package postgrey)")
		}
	}
	pu, err := user.Lookup("postgrey")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("postgrey needs root and its postgrey account")
	}
	uid, _ := strconv.Atoi(pu.Uid)
	// Not t.TempDir: its 0700 parent is closed to postgrey's account once
	// it dropped privileges.
	db, err := os.MkdirTemp("", "postgrey-db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(db) })
	if err := os.Chown(db, uid, -1); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	group := pu.Gid
	if g, err := user.LookupGroupId(pu.Gid); err == nil {
		group = g.Name
	}
	cmd := exec.Command(bin, "--inet="+addr, "--dbdir="+db, "--delay="+strconv.Itoa(delay),
		"--user=postgrey", "--group="+group, "--auto-whitelist-clients=0")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("postgrey output:\n%s", out.String())
		}
	})
	for range 100 {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("postgrey did not listen on %s:\n%s", addr, out.String())
	return ""
}
