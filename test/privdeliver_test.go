package test

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// privateHome is a throw-away login whose home, under parent, is mode
// 0700 and its own, as a real user's home often is: only the user (and
// root) can look inside.
func privateHome(t *testing.T, parent string) homeAccount {
	t.Helper()
	a := newHomeAccount(t, parent)
	if err := os.Chmod(a.home, 0o700); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPrivilegedDelivery: with a Debian-like master.cf, the queue manager
// runs as mail_owner and the local service (the root executor) as root;
// a message to a local account lands in its Maildir owned by it; a pipe
// service runs as its user=; a .forward in a 0700 home is read with the
// user's rights (one root alone could read is ignored).
func TestPrivilegedDelivery(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	owner, err := user.Lookup("postfix")
	if err != nil {
		t.Skip("no postfix account (mail_owner)")
	}
	base := baseDir(t)
	piper := newAccount(t)
	out := filepath.Join(base, "out")
	mkdirOwned(t, out, 0o755, piper.uid, piper.gid)
	script := filepath.Join(base, "record.sh")
	writeFile(t, script, "#!/bin/sh\nf="+out+"/msg.$$\n{ echo \"uid=$(id -u) gid=$(id -g)\"; cat; } > $f.tmp && mv $f.tmp $f\n", 0o755)
	writeFile(t, filepath.Join(base, "transport"), "pipe.test recorder:\n", 0o644)
	homes := filepath.Join(base, "home")
	mkdirOwned(t, homes, 0o755, 0, 0)
	// The local account mail goes to, with a home that exists (the
	// harness's accounts have none: local(8) defers them when
	// /nonexistent is missing).
	rcpt := newHomeAccount(t, homes)
	to := rcpt.name + "@mx.moat.test"
	fwd := privateHome(t, homes)
	writeFileOwned(t, filepath.Join(fwd.home, ".forward"), to+"\n", 0o600, fwd.uid, fwd.gid)
	rootFwd := privateHome(t, homes)
	writeFileOwned(t, filepath.Join(rootFwd.home, ".forward"), to+"\n", 0o600, 0, 0)

	s := startWithMaster(t, "relay_domains = pipe.test\n"+
		"transport_maps = texthash:"+base+"/transport\n",
		`127.0.0.1:{{PORT}} inet n - n - - smtpd
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       y       -       -       trivial-rewrite
bounce    unix  -       -       y       -       0       bounce
defer     unix  -       -       y       -       0       bounce
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       y       -       -       lmtp
anvil     unix  -       -       y       -       1       anvil
recorder  unix  -       n       n       -       -       pipe
  flags=R user=`+piper.name+` argv=`+script+`
`)
	s.waitLog(`postfix/master\[\d+\]: daemon started`, 15*time.Second)

	qm, loc := s.childPIDs("qmgr/unix"), s.childPIDs("local/unix")
	if len(qm) != 1 || len(loc) != 1 {
		t.Fatalf("qmgr children %v, local children %v; want one each", qm, loc)
	}
	st := procStatus(t, qm[0])
	if want := strings.TrimSpace(strings.Repeat(owner.Uid+" ", 4)); st["Uid"] != want {
		t.Errorf("qmgr Uid %q, want mail_owner's %s in all four fields", st["Uid"], owner.Uid)
	}
	if want := strings.TrimSpace(strings.Repeat(owner.Gid+" ", 4)); st["Gid"] != want {
		t.Errorf("qmgr Gid %q, want mail_owner's %s in all four fields", st["Gid"], owner.Gid)
	}
	if st["Groups"] != "" {
		t.Errorf("qmgr supplementary groups %q, want none", st["Groups"])
	}
	if st := procStatus(t, loc[0]); st["Uid"] != "0 0 0 0" {
		t.Errorf("local Uid %q, want root", st["Uid"])
	}
	if root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", loc[0])); root != "/" {
		t.Errorf("local's root is %s, want / (chroot n)", root)
	}

	// A local account: its Maildir, its file.
	id := swaksSend(t, s, "sender@example.org", to, "to rcpt", "hello rcpt")
	s.waitLog(sentLine("local", id, to, "", "local", "2.0.0", "sent", "delivered to maildir"), 20*time.Second)
	path, _ := waitMaildirSubject(t, s, s.maildir(rcpt.name), "to rcpt")
	if u, g := fileOwner(t, path); u != rcpt.uid || g != rcpt.gid {
		t.Errorf("%s owned by %d:%d, want the recipient's %d:%d", path, u, g, rcpt.uid, rcpt.gid)
	}

	// A pipe service: the command runs as user=.
	id = swaksSend(t, s, "sender@example.org", "bob@pipe.test", "to pipe", "hello pipe")
	s.waitLog(sentLine("pipe", id, "bob@pipe.test", "", "recorder", "2.0.0", "sent", "delivered via recorder service"), 20*time.Second)
	files, _ := filepath.Glob(filepath.Join(out, "msg.*"))
	if len(files) != 1 {
		t.Fatalf("the pipe command ran %d times, want once: %v", len(files), files)
	}
	b, _ := os.ReadFile(files[0])
	if want := fmt.Sprintf("uid=%d gid=%d\n", piper.uid, piper.gid); !strings.HasPrefix(string(b), want) || !strings.Contains(string(b), "hello pipe") {
		t.Errorf("the pipe command's record:\n%s\nwant it to start %q", b, want)
	}

	// A .forward in a 0700 home, the user's: followed (mail_owner could
	// not even see it).
	id = swaksSend(t, s, "sender@example.org", fwd.name+"@mx.moat.test", "forwarded", "via .forward")
	s.waitLog(sentLine("local", id, fwd.name+"@mx.moat.test", "", "local", "2.0.0", "sent", "forwarded as [0-9A-Za-z]+"), 20*time.Second)
	waitMaildirSubject(t, s, s.maildir(rcpt.name), "forwarded")
	// Root's own .forward in the user's home: owned by root, so local(8)
	// would accept it, but the user cannot read it, and it is read as the
	// user: ignored, the mailbox gets the message.
	id = swaksSend(t, s, "sender@example.org", rootFwd.name+"@mx.moat.test", "kept", "not forwarded")
	s.waitLog(sentLine("local", id, rootFwd.name+"@mx.moat.test", "", "local", "2.0.0", "sent", "delivered to maildir"), 20*time.Second)
	s.waitLog(`postfix/local\[\d+\]: warning: cannot open file `+homes+`/`+rootFwd.name+`/\.forward: Permission denied`, 5*time.Second)
}

// writeFileOwned writes a file and gives it to uid:gid.
func writeFileOwned(t *testing.T, path, data string, mode os.FileMode, uid, gid int) {
	t.Helper()
	writeFile(t, path, data, mode)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// fileOwner is a file's owner and group.
func fileOwner(t *testing.T, path string) (int, int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}
