package test

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProxymapForJailedSMTPD: a chroot = y smtpd, running as mail_owner in
// the queue directory, decides relaying from relay_domains =
// proxy:texthash:FILE with FILE outside its jail. The proxymap child
// (master.cf "proxymap unix - - n - - proxymap": mail_owner, unjailed)
// reads it for the smtpd; an edit of the file is seen by the next lookups,
// which the jailed smtpd could not do by itself.
func TestProxymapForJailedSMTPD(t *testing.T) {
	needRoot(t)
	t.Parallel()
	owner, err := user.Lookup("postfix")
	if err != nil {
		t.Skip("no postfix account (mail_owner)")
	}
	s := startWithMaster(t, "smtpd_peername_lookup = no\nrelay_domains = proxy:texthash:{{DIR}}/tables/relay\n",
		`127.0.0.1:{{PORT}} inet n - y - - smtpd
qmgr      unix  n       -       n       300     1       qmgr
local     unix  -       n       n       -       -       local
proxymap  unix  -       -       n       -       -       proxymap
`)
	// The table lives where an admin keeps it: outside the jail, readable
	// by mail_owner (proxymap runs as mail_owner), owned by root.
	for _, d := range []string{filepath.Dir(s.dir), s.dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tables := filepath.Join(s.dir, "tables")
	if err := os.Mkdir(tables, 0o755); err != nil {
		t.Fatal(err)
	}
	relay := filepath.Join(tables, "relay")
	if err := os.WriteFile(relay, []byte("relayed.test OK\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	pm := s.childPIDs("proxymap/unix")
	if len(pm) != 1 {
		t.Fatalf("proxymap children %v, want one", pm)
	}
	st := procStatus(t, pm[0])
	if uid := strings.Fields(st["Uid"]); len(uid) == 0 || uid[0] != owner.Uid {
		t.Errorf("proxymap Uid %q, want mail_owner %s", st["Uid"], owner.Uid)
	}
	if root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pm[0])); root != "/" {
		t.Errorf("proxymap root %q, want / (chroot = n)", root)
	}

	d := dial(t, s.addr())
	d.expect("220")
	d.cmd("EHLO client.example", "250")
	d.cmd("MAIL FROM:<sender@example.org>", "250")
	d.cmd("RCPT TO:<someone@relayed.test>", "250")
	if r := d.cmd("RCPT TO:<someone@later.test>", ""); !strings.Contains(strings.Join(r, " "), "Relay access denied") {
		t.Fatalf("unlisted domain: %q, want a relay refusal", r)
	}

	// Replace the table (as an admin's editor does) and wait for the
	// server to notice: at most a second between checks.
	tmp := relay + ".new"
	if err := os.WriteFile(tmp, []byte("relayed.test OK\nlater.test OK\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, relay); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := d.cmd("RCPT TO:<someone@later.test>", "")
		if strings.HasPrefix(r[len(r)-1], "250") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edited relay_domains table not seen through proxymap: %q\n%s", r, tail(s.log(), 20))
		}
		time.Sleep(300 * time.Millisecond)
	}
	d.cmd("QUIT", "221")
	s.waitLog(`postfix/proxymap\[\d+\]: table texthash:\S+/tables/relay has changed -- reopening`, 5*time.Second)
}
