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
	account  account    // the submitter
	rcpt     [4]account // recipients: local delivery needs real accounts
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
	prepareDir(t, dir)
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
	// Local delivery writes each Maildir as its user: the spool holds a
	// directory per recipient, theirs, as a mail spool does.
	for i := range e.rcpt {
		e.rcpt[i] = newAccount(t)
		p := filepath.Join(dir, "mail", e.rcpt[i].name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, e.rcpt[i].uid, e.rcpt[i].gid); err != nil {
			t.Fatal(err)
		}
	}
	if start {
		e.start()
		t.Cleanup(s.stop)
	} else {
		// Create the queue as `postfix start` would, then stop.
		e.start()
		s.stop()
	}
	return e
}

// start starts moat from the world-readable copy in command_directory,
// as an installed moat runs from /usr/sbin: local delivery re-executes
// the running binary as each recipient, who must be able to run it.
func (e *submitEnv) start() {
	e.t.Helper()
	saved := moatBin
	moatBin = filepath.Join(e.bin, "moat")
	defer func() { moatBin = saved }()
	e.server.start()
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

// message waits for the message with the given subject in a user's
// Maildir and returns it.
func (e *submitEnv) message(user, subject string) string {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(e.maildir(user), "new", "*"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err == nil && strings.Contains(string(b), "\nSubject: "+subject+"\n") {
				return string(b)
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no message %q for %s after 20s\nlog:\n%s", subject, user, e.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSendmailUser: an ordinary user, who cannot write the queue, submits
// through the set-group-ID postdrop; pickup takes the file, the queue
// manager delivers it, and the log tells who sent it.
func TestSendmailUser(t *testing.T) {
	e := newSubmitEnv(t, true)
	a := &e.account
	r0, r1, r2, r3 := e.rcpt[0].name, e.rcpt[1].name, e.rcpt[2].name, e.rcpt[3].name
	_, stderr, code := e.run(a, "Subject: plain\n\nhello from a user\n", e.sendmail, "-i", r0)
	if code != 0 {
		t.Fatalf("sendmail exited %d: %s", code, stderr)
	}
	m := e.message(r0, "plain")
	e.waitLog(fmt.Sprintf(`postfix/pickup\[\d+\]: [0-9A-Za-z]+: uid=%d from=<%s>`, a.uid, a.name), 5*time.Second)
	e.waitLog(`postfix/cleanup\[\d+\]: [0-9A-Za-z]+: message-id=<`, 5*time.Second)
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
		msg := "To: " + r0 + ", Someone <" + r1 + "@mx.moat.test>\nCc: " + r2 + "\nBcc: " + r3 + "\nSubject: extract\n\nbody\n"
		if _, stderr, code := e.run(a, msg, e.sendmail, "-t", "-i"); code != 0 {
			t.Fatalf("sendmail -t exited %d: %s", code, stderr)
		}
		for _, u := range []string{r0, r1, r2, r3} {
			if m := e.message(u, "extract"); strings.Contains(m, "Bcc:") || !strings.Contains(m, "To: "+r0) {
				t.Errorf("%s got:\n%s", u, m)
			}
		}
	})

	t.Run("f flag", func(t *testing.T) {
		if _, stderr, code := e.run(a, "Subject: f\n\nx\n", e.sendmail, "-f", "bounces@example.org", r1); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if m := e.message(r1, "f"); !strings.HasPrefix(m, "Return-Path: <bounces@example.org>") {
			t.Errorf("got:\n%s", m)
		}
	})

	t.Run("dot ends the message without -i", func(t *testing.T) {
		if _, stderr, code := e.run(a, "Subject: dot\n\nbefore\n.\nafter\n", e.sendmail, r0); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if m := e.message(r0, "dot"); !strings.Contains(m, "before") || strings.Contains(m, "after") {
			t.Errorf("got:\n%s", m)
		}
	})

	t.Run("cron", func(t *testing.T) {
		// cron's exact invocation (Debian cron, do_command.c).
		msg := "From: root (Cron Daemon)\nTo: " + r2 + "\nSubject: Cron <root@host> true\n\noutput\n"
		if _, stderr, code := e.run(a, msg, e.sendmail, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", r2); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		e.message(r2, "Cron <root@host> true")
	})

	t.Run("bs", func(t *testing.T) {
		dialogue := "EHLO client\r\nMAIL FROM:<" + a.name + ">\r\nRCPT TO:<" + r3 + ">\r\nDATA\r\nSubject: bs\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n"
		out, stderr, code := e.run(a, dialogue, e.sendmail, "-bs")
		if code != 0 || !strings.Contains(out, "250 2.0.0 Ok: queued") || !strings.HasPrefix(out, "220 ") || !strings.Contains(out, "221 2.0.0") {
			t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
		}
		e.message(r3, "bs")
	})

	t.Run("mailx", func(t *testing.T) {
		rc := filepath.Join(e.dir, "mailrc")
		os.WriteFile(rc, []byte("set sendmail="+e.sendmail+"\n"), 0o644)
		out, stderr, code := e.runEnv(a, []string{"MAILRC=" + rc, "HOME=/nonexistent"}, "sent with bsd-mailx\n", "/usr/bin/mail", "-s", "from mailx", r0)
		if code != 0 {
			t.Fatalf("mail exit %d: %s %s", code, out, stderr)
		}
		if m := e.message(r0, "from mailx"); !strings.Contains(m, "sent with bsd-mailx") {
			t.Errorf("got:\n%s", m)
		}
	})

	t.Run("moat sendmail verb", func(t *testing.T) {
		if _, stderr, code := e.run(a, "Subject: verb\n\nx\n", filepath.Join(e.bin, "moat"), "sendmail", "-i", r1); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		e.message(r1, "verb")
	})

	t.Run("root and mail_owner write maildrop directly", func(t *testing.T) {
		if _, stderr, code := e.run(nil, "Subject: root\n\nx\n", e.sendmail, r2); code != 0 {
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
		if _, stderr, code := e.run(&account{"postfix", uid, gid}, "Subject: owner\n\nx\n", e.sendmail, r2); code != 0 {
			t.Fatalf("mail_owner: exit %d: %s", code, stderr)
		}
		e.message(r2, "root")
		e.message(r2, "owner")
		e.waitLog(`postfix/pickup\[\d+\]: [0-9A-Za-z]+: uid=0 from=<root>`, 5*time.Second)
		e.waitLog(fmt.Sprintf(`postfix/pickup\[\d+\]: [0-9A-Za-z]+: uid=%d from=<postfix>`, uid), 5*time.Second)
	})

	t.Run("bp", func(t *testing.T) {
		out, stderr, code := e.run(nil, "", e.sendmail, "-bp")
		if code != 0 || !strings.Contains(out, "Mail queue is empty") && !strings.Contains(out, "-Queue ID-") {
			t.Errorf("sendmail -bp: exit %d %q %q", code, out, stderr)
		}
	})

	t.Run("php", func(t *testing.T) {
		if _, err := exec.LookPath("php"); err != nil {
			t.Skip("no php")
		}
		out, stderr, code := e.run(a, "", "/usr/bin/php", "-d", "sendmail_path="+e.sendmail+" -t -i",
			"-r", `exit(mail("`+r3+`", "from php", "sent by mail()", "From: web@mx.moat.test") ? 0 : 1);`)
		if code != 0 {
			t.Fatalf("php exit %d: %s %s", code, out, stderr)
		}
		e.message(r3, "from php")
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
		evil := filepath.Join(e.dir, "evil")
		os.Mkdir(evil, 0o755)
		cf, _ := os.ReadFile(filepath.Join(e.dir, "main.cf"))
		os.WriteFile(filepath.Join(evil, "main.cf"), append(cf, "queue_directory = /var/tmp\n"...), 0o644)
		os.Chown(evil, a.uid, a.gid)
		os.Chown(filepath.Join(evil, "main.cf"), a.uid, a.gid)
		_, stderr, code = e.run(a, "x\n", e.sendmail, "-C", evil, r0)
		if code != 78 || !strings.Contains(stderr, "postdrop: fatal: "+evil+" is not owned by root: refusing it as a configuration") {
			t.Errorf("an untrusted configuration directory: exit %d %q", code, stderr)
		}
	})
}

// TestSendmailWhileStopped: mail submitted while moat is stopped waits
// in maildrop/, unreadable to other users, and is delivered after start.
func TestSendmailWhileStopped(t *testing.T) {
	e := newSubmitEnv(t, false)
	a := &e.account
	if _, stderr, code := e.run(a, "Subject: waiting\n\nqueued while stopped\n", e.sendmail, e.rcpt[0].name); code != 0 {
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
	e.message(e.rcpt[0].name, "waiting")
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
	_, stderr, code = e.run(a, "x\n", e.sendmail, e.rcpt[0].name)
	if code != 77 || !strings.Contains(stderr, fmt.Sprintf("User %s(%d) is not allowed to submit mail", a.name, a.uid)) {
		t.Errorf("unauthorized user: exit %d %q", code, stderr)
	}
}
