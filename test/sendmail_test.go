package test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// submitEnv is a moat instance set up for local submission as `make
// install` sets it up: a non-privileged moat binary reached through a
// link named sendmail, and a set-group-ID copy as postdrop in
// command_directory, all readable by other users.
type submitEnv struct {
	*server
	bin      string // command_directory
	sendmail string
	account  account
}

// account is a throw-away login made for a test.
type account struct {
	name     string
	uid, gid int
}

// newAccount creates a login with no special group, removed at cleanup.
func newAccount(t *testing.T) account {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create an account")
	}
	var b [4]byte
	rand.Read(b[:])
	name := "moatsm" + hex.EncodeToString(b[:])
	if out, err := exec.Command("useradd", "-M", "-N", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", "-c", "Test User,,,", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return account{name, uid, gid}
}

// newSubmitEnv writes the configuration (with a pickup row as in Postfix's
// stock master.cf), installs the binaries and, unless start is false,
// starts moat.
func newSubmitEnv(t *testing.T, start bool) *submitEnv {
	t.Helper()
	acct := newAccount(t)
	dir := t.TempDir()
	// t.TempDir's directories are 0700; other users must reach the
	// configuration and the binaries, as they reach /etc and /usr/sbin.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &server{t: t, dir: dir, port: freePort(t)}
	bin := filepath.Join(dir, "bin")
	mainCF := strings.ReplaceAll(baseMainCF, "{{DIR}}", dir) + "command_directory = " + bin + "\nalias_maps =\nalias_database =\n"
	masterCF := fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd\npickup unix n - y 60 1 pickup\n", s.port)
	for name, data := range map[string]string{"main.cf": mainCF, "master.cf": masterCF} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, moatBin, filepath.Join(bin, "moat"), 0o755)
	copyFile(t, moatBin, filepath.Join(bin, "postdrop"), 0o755)
	grp, err := user.LookupGroup("postdrop")
	if err != nil {
		t.Skip("no postdrop group")
	}
	gid, _ := strconv.Atoi(grp.Gid)
	if err := os.Chown(filepath.Join(bin, "postdrop"), 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(bin, "postdrop"), 0o2755|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("moat", filepath.Join(bin, "sendmail")); err != nil {
		t.Fatal(err)
	}
	e := &submitEnv{server: s, bin: bin, sendmail: filepath.Join(bin, "sendmail"), account: acct}
	if start {
		s.start()
		t.Cleanup(s.stop)
	} else {
		// Create the queue as `postfix start` would, then stop.
		s.start()
		s.stop()
	}
	return e
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// run runs a program as acct (nil: as root), with MAIL_CONFIG pointing at
// the test's configuration, bounded in time.
func (e *submitEnv) run(acct *account, stdin string, path string, args ...string) (string, string, int) {
	e.t.Helper()
	return e.runEnv(acct, nil, stdin, path, args...)
}

// runEnv is run with more environment variables.
func (e *submitEnv) runEnv(acct *account, env []string, stdin string, path string, args ...string) (string, string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append([]string{"MAIL_CONFIG=" + e.dir, "PATH=/usr/bin:/bin"}, env...)
	if acct != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(acct.uid), Gid: uint32(acct.gid), Groups: []uint32{}}}
		cmd.Dir = "/"
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		e.t.Fatalf("%s %v: timed out", path, args)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("%s: %v", path, err)
	}
	return stdout.String(), stderr.String(), code
}

// message returns the one message in a user's Maildir.
func (e *submitEnv) message(user string) string {
	e.t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.maildir(user), "new", "*"))
	if len(files) != 1 {
		e.t.Fatalf("%s: %d messages, want 1", user, len(files))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// TestSendmailUser: an ordinary user, who cannot write the queue, submits
// through the set-group-ID postdrop; pickup takes the file, the queue
// manager delivers it, and the log tells who sent it.
func TestSendmailUser(t *testing.T) {
	e := newSubmitEnv(t, true)
	a := &e.account
	_, stderr, code := e.run(a, "Subject: plain\n\nhello from a user\n", e.sendmail, "-i", "alice")
	if code != 0 {
		t.Fatalf("sendmail exited %d: %s", code, stderr)
	}
	e.waitDelivered("alice", 1, 20*time.Second)
	e.waitLog(fmt.Sprintf(`postfix/pickup\[\d+\]: [0-9A-Za-z]+: uid=%d from=<%s>`, a.uid, a.name), 5*time.Second)
	e.waitLog(`postfix/cleanup\[\d+\]: [0-9A-Za-z]+: message-id=<`, 5*time.Second)
	m := e.message("alice")
	for _, want := range []string{
		"Return-Path: <" + a.name + "@mx.moat.test>",
		fmt.Sprintf("Received: by mx.moat.test (moat, from userid %d)\n\tid ", a.uid),
		"From: Test User <" + a.name + "@mx.moat.test>",
		"\nMessage-Id: <", "\nDate: ", "hello from a user",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("delivered message lacks %q:\n%s", want, m)
		}
	}

	t.Run("t flag and Bcc", func(t *testing.T) {
		msg := "To: bob, Carol <carol@mx.moat.test>\nCc: dave\nBcc: erin\nSubject: extract\n\nbody\n"
		if _, stderr, code := e.run(a, msg, e.sendmail, "-t", "-i"); code != 0 {
			t.Fatalf("sendmail -t exited %d: %s", code, stderr)
		}
		for _, u := range []string{"bob", "carol", "dave", "erin"} {
			e.waitDelivered(u, 1, 20*time.Second)
			if m := e.message(u); strings.Contains(m, "Bcc:") || !strings.Contains(m, "To: bob") {
				t.Errorf("%s got:\n%s", u, m)
			}
		}
	})

	t.Run("f flag", func(t *testing.T) {
		if _, stderr, code := e.run(a, "Subject: f\n\nx\n", e.sendmail, "-f", "bounces@example.org", "frank"); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		e.waitDelivered("frank", 1, 20*time.Second)
		if m := e.message("frank"); !strings.HasPrefix(m, "Return-Path: <bounces@example.org>") {
			t.Errorf("got:\n%s", m)
		}
	})

	t.Run("dot ends the message without -i", func(t *testing.T) {
		if _, stderr, code := e.run(a, "Subject: dot\n\nbefore\n.\nafter\n", e.sendmail, "gina"); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		e.waitDelivered("gina", 1, 20*time.Second)
		if m := e.message("gina"); !strings.Contains(m, "before") || strings.Contains(m, "after") {
			t.Errorf("got:\n%s", m)
		}
	})

	t.Run("cron", func(t *testing.T) {
		// cron's exact invocation (Debian cron, do_command.c).
		msg := "From: root (Cron Daemon)\nTo: harry\nSubject: Cron <root@host> true\n\noutput\n"
		if _, stderr, code := e.run(a, msg, e.sendmail, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "harry"); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		e.waitDelivered("harry", 1, 20*time.Second)
	})

	t.Run("bs", func(t *testing.T) {
		dialogue := "EHLO client\r\nMAIL FROM:<" + a.name + ">\r\nRCPT TO:<ivan>\r\nDATA\r\nSubject: bs\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n"
		out, stderr, code := e.run(a, dialogue, e.sendmail, "-bs")
		if code != 0 || !strings.Contains(out, "250 2.0.0 Ok: queued") || !strings.HasPrefix(out, "220 ") || !strings.Contains(out, "221 2.0.0") {
			t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
		}
		e.waitDelivered("ivan", 1, 20*time.Second)
	})

	t.Run("mailx", func(t *testing.T) {
		rc := filepath.Join(e.dir, "mailrc")
		os.WriteFile(rc, []byte("set sendmail="+e.sendmail+"\n"), 0o644)
		out, stderr, code := e.runEnv(a, []string{"MAILRC=" + rc, "HOME=/nonexistent"}, "sent with bsd-mailx\n", "/usr/bin/mail", "-s", "from mailx", "judy")
		if code != 0 {
			t.Fatalf("mail exit %d: %s %s", code, out, stderr)
		}
		e.waitDelivered("judy", 1, 20*time.Second)
		if m := e.message("judy"); !strings.Contains(m, "Subject: from mailx") || !strings.Contains(m, "sent with bsd-mailx") {
			t.Errorf("got:\n%s", m)
		}
	})

	t.Run("moat sendmail verb", func(t *testing.T) {
		if _, stderr, code := e.run(a, "Subject: verb\n\nx\n", filepath.Join(e.bin, "moat"), "sendmail", "-i", "lena"); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		e.waitDelivered("lena", 1, 20*time.Second)
	})

	t.Run("root and mail_owner write maildrop directly", func(t *testing.T) {
		if _, stderr, code := e.run(nil, "Subject: root\n\nx\n", e.sendmail, "olga"); code != 0 {
			t.Fatalf("root: exit %d: %s", code, stderr)
		}
		owner, err := user.Lookup("postfix")
		if err != nil {
			t.Skip("no postfix account")
		}
		uid, _ := strconv.Atoi(owner.Uid)
		gid, _ := strconv.Atoi(owner.Gid)
		// Without the postdrop binary, so the direct path is the only one.
		os.Rename(filepath.Join(e.bin, "postdrop"), filepath.Join(e.bin, "postdrop.off"))
		defer os.Rename(filepath.Join(e.bin, "postdrop.off"), filepath.Join(e.bin, "postdrop"))
		if _, stderr, code := e.run(&account{"postfix", uid, gid}, "Subject: owner\n\nx\n", e.sendmail, "olga"); code != 0 {
			t.Fatalf("mail_owner: exit %d: %s", code, stderr)
		}
		e.waitDelivered("olga", 2, 20*time.Second)
		e.waitLog(`postfix/pickup\[\d+\]: [0-9A-Za-z]+: uid=0 from=<root>`, 5*time.Second)
		e.waitLog(fmt.Sprintf(`postfix/pickup\[\d+\]: [0-9A-Za-z]+: uid=%d from=<postfix>`, uid), 5*time.Second)
	})

	t.Run("bp", func(t *testing.T) {
		out, stderr, code := e.run(nil, "", e.sendmail, "-bp")
		if code != 0 || !strings.Contains(out, "Mail queue is empty") {
			t.Errorf("sendmail -bp: exit %d %q %q", code, out, stderr)
		}
	})

	t.Run("php", func(t *testing.T) {
		if _, err := exec.LookPath("php"); err != nil {
			t.Skip("no php")
		}
		out, stderr, code := e.run(a, "", "/usr/bin/php", "-d", "sendmail_path="+e.sendmail+" -t -i",
			"-r", `exit(mail("kate", "from php", "sent by mail()", "From: web@mx.moat.test") ? 0 : 1);`)
		if code != 0 {
			t.Fatalf("php exit %d: %s %s", code, out, stderr)
		}
		e.waitDelivered("kate", 1, 20*time.Second)
	})

	t.Run("refusals", func(t *testing.T) {
		_, stderr, code := e.run(a, "x\n", e.sendmail)
		if code != 64 || !strings.Contains(stderr, "Recipient addresses must be specified on the command line or via the -t option") {
			t.Errorf("no recipients: exit %d %q", code, stderr)
		}
		_, stderr, code = e.run(a, "Subject: none\n\nx\n", e.sendmail, "-t")
		if code != 64 || !strings.Contains(stderr, "No recipient addresses found in message header") {
			t.Errorf("-t without recipients: exit %d %q", code, stderr)
		}
		// A user pointing postdrop at a configuration of their own is refused.
		_, stderr, code = e.run(a, "x\n", e.sendmail, "-C", "/tmp", "leo")
		if code == 0 {
			t.Errorf("an untrusted configuration directory was accepted: %q", stderr)
		}
	})
}

// TestSendmailWhileStopped: mail submitted while moat is stopped waits
// in maildrop/, unreadable to other users, and is delivered after start.
func TestSendmailWhileStopped(t *testing.T) {
	e := newSubmitEnv(t, false)
	a := &e.account
	if _, stderr, code := e.run(a, "Subject: waiting\n\nqueued while stopped\n", e.sendmail, "mallory"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	drop := filepath.Join(e.dir, "spool", "maildrop")
	st, err := os.Stat(drop)
	if err != nil || st.Mode() != os.ModeDir|os.ModeSticky|0o730 {
		t.Fatalf("maildrop/: %v %v", st.Mode(), err)
	}
	ents, err := os.ReadDir(drop)
	if err != nil || len(ents) != 1 {
		t.Fatalf("maildrop/ holds %v (%v)", ents, err)
	}
	file := filepath.Join(drop, ents[0].Name())
	fi, _ := os.Stat(file)
	if sys := fi.Sys().(*syscall.Stat_t); int(sys.Uid) != a.uid {
		t.Errorf("maildrop file owned by %d, want the submitter %d", sys.Uid, a.uid)
	}
	// Neither the submitter nor another user can list maildrop/ or read
	// the file, whose name they would have to guess.
	other := newAccount(t)
	for _, who := range []*account{a, &other} {
		if out, _, code := e.run(who, "", "/bin/ls", drop); code == 0 {
			t.Errorf("%s listed maildrop/: %s", who.name, out)
		}
		if out, _, code := e.run(who, "", "/bin/cat", file); code == 0 {
			t.Errorf("%s read %s: %s", who.name, file, out)
		}
	}
	e.start()
	t.Cleanup(e.stop)
	e.waitDelivered("mallory", 1, 20*time.Second)
	if ents, _ := os.ReadDir(drop); len(ents) != 0 {
		t.Errorf("maildrop/ still holds %v", ents)
	}
}

// TestPostdropSetgidOnly: the set-group-ID copy acts as postdrop whatever
// its name or arguments, so it cannot lend its group to another command.
func TestPostdropSetgidOnly(t *testing.T) {
	e := newSubmitEnv(t, false)
	a := &e.account
	postdrop := filepath.Join(e.bin, "postdrop")
	link := filepath.Join(e.bin, "postconf")
	if err := os.Symlink("postdrop", link); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(e.dir, "main.cf"))
	for _, args := range [][]string{
		{link, "-e", "myhostname=evil.example"},
		{postdrop, "postconf", "-e", "myhostname=evil.example"},
		{postdrop, "master-child", "-r", "qmgr"},
		{postdrop, "postsuper", "-d", "ALL"},
	} {
		_, stderr, code := e.run(a, "", args[0], args[1:]...)
		if code != 64 || !strings.Contains(stderr, "postdrop: fatal: usage: postdrop") {
			t.Errorf("%v: exit %d, stderr %q; want postdrop's usage error", args, code, stderr)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(e.dir, "main.cf")); string(after) != string(before) {
		t.Error("main.cf changed")
	}
	// Garbage on standard input is refused, and leaves nothing behind.
	_, stderr, code := e.run(a, "MOATDROP 1\nsender x\n", postdrop)
	if code != 65 || !strings.Contains(stderr, "malformed input") {
		t.Errorf("garbage: exit %d %q", code, stderr)
	}
	// A forged sender without -f is refused too.
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "spool", "maildrop")); len(ents) != 0 {
		t.Errorf("maildrop/ holds %v", ents)
	}
	// authorized_submit_users applies to the real user.
	cf := string(before) + "authorized_submit_users = !" + a.name + ", static:anyone\n"
	os.WriteFile(filepath.Join(e.dir, "main.cf"), []byte(cf), 0o644)
	_, stderr, code = e.run(a, "x\n", e.sendmail, "nora")
	if code != 77 || !strings.Contains(stderr, fmt.Sprintf("User %s(%d) is not allowed to submit mail", a.name, a.uid)) {
		t.Errorf("unauthorized user: exit %d %q", code, stderr)
	}
}
