package test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 5 end to end: mail received over SMTP from real clients reaches
// real accounts' mailboxes (home Maildir, mbox spool), alias targets
// (users, files, commands), .forward files, virtual(8) mailboxes and a
// pipe(8) row taken from Debian's stock master.cf, and fails the way
// Postfix fails (full mailbox bounces, unwritable Maildir defers until
// postqueue -f), surviving SIGKILL of the queue manager mid-delivery;
// pflogsumm reads the result.

// needDeliveryRoot skips tests that create accounts and check ownership.
func needDeliveryRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: local(8) delivers with real accounts' rights (useradd, chown, setuid delivery children)")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("no useradd")
	}
}

// homeAccount is a throw-away login with a home directory under parent.
type homeAccount struct {
	account
	home string
}

// newHomeAccount creates a login with its home (useradd -m), removed at
// cleanup; the home goes with the test's temporary directory.
func newHomeAccount(t *testing.T, parent string) homeAccount {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := "moatdl" + hex.EncodeToString(b[:])
	home := filepath.Join(parent, name)
	if out, err := exec.Command("useradd", "-m", "-d", home, "-N", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return homeAccount{account{name, uid, gid}, home}
}

// homedAccount is newHomeAccount with a home of its own: local(8) defers
// mail for an account whose home directory is missing (the harness's
// accounts have /nonexistent), even when the mailbox is in the spool.
func homedAccount(t *testing.T) account {
	t.Helper()
	return newHomeAccount(t, baseDir(t)).account
}

// baseDir is a directory other accounts can reach (t.TempDir's are
// 0700), for homes, tables, scripts and their output.
func baseDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeFile writes a file with a mode, failing the test on error.
func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// mkdirOwned creates a directory with a mode and owner.
func mkdirOwned(t *testing.T, path string, mode os.FileMode, uid, gid int) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

var swaksQueued = regexp.MustCompile(`<-\s+250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)`)

// swaksSend sends one message with swaks and returns its queue ID.
func swaksSend(t *testing.T, s *server, from, to, subject, body string) string {
	t.Helper()
	out, err := runTool(t, 30*time.Second, "", "swaks",
		"--server", s.addr(), "--helo", "client.example.org",
		"--from", from, "--to", to,
		"--header", "Subject: "+subject, "--body", body)
	if err != nil {
		t.Fatalf("swaks to %s: %v\n%s", to, err, out)
	}
	m := swaksQueued.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("swaks saw no 250 queued as:\n%s", out)
	}
	return m[1]
}

// maildirFiles returns the messages in a Maildir's new/ and cur/.
func maildirFiles(dir string) map[string]string {
	out := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				out[f] = string(b)
			}
		}
	}
	return out
}

// waitMaildirSubject waits for exactly one message with the subject in
// a Maildir and returns its path and text.
func waitMaildirSubject(t *testing.T, s *server, dir, subject string) (string, string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var found []string
		for f, text := range maildirFiles(dir) {
			if strings.Contains(text, "\nSubject: "+subject+"\n") {
				found = append(found, f)
			}
		}
		if len(found) > 1 {
			t.Fatalf("%s: %d messages with subject %q, want 1", dir, len(found), subject)
		}
		if len(found) == 1 {
			b, _ := os.ReadFile(found[0])
			return found[0], string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no message with subject %q within 20s\nlog:\n%s", dir, subject, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFileContains waits until a file contains want and returns it.
func waitFileContains(t *testing.T, s *server, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks %q within 20s:\n%s\nlog:\n%s", path, want, b, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ownerOf returns a file's owner uid.
func ownerOf(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// sentLine is the regular expression of a delivery agent's log line.
func sentLine(agent, id, to, origTo, relay, dsn, status, text string) string {
	orig := ""
	if origTo != "" {
		orig = `orig_to=<` + regexp.QuoteMeta(origTo) + `>, `
	}
	return `postfix/` + agent + `\[\d+\]: ` + id + `: to=<` + regexp.QuoteMeta(to) + `>, ` + orig +
		`relay=` + regexp.QuoteMeta(relay) + `, delay=[0-9.]+, delays=[0-9./]+, dsn=` + regexp.QuoteMeta(dsn) +
		`, status=` + status + ` \(` + text + `\)`
}

// forwardedAs waits for the "forwarded as ID" line of a recipient and
// returns the new queue ID.
func forwardedAs(s *server, id, to, origTo string) string {
	s.t.Helper()
	line := s.waitLog(sentLine("local", id, to, origTo, "local", "2.0.0", "sent", `forwarded as [0-9A-Za-z]+`), 20*time.Second)
	m := regexp.MustCompile(`forwarded as ([0-9A-Za-z]+)\)`).FindStringSubmatch(line)
	return m[1]
}

// uidOf returns a login's uid.
func uidOf(t *testing.T, name string) int {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no %s account: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	return uid
}

// postalias builds hash:FILE with moat's postalias, as root, with a
// configuration of its own in dir (postalias reads main.cf).
func postalias(t *testing.T, dir, file string) {
	t.Helper()
	conf := filepath.Join(dir, "postalias-conf")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(conf, "main.cf"), "compatibility_level = 3.6\n", 0o644)
	if o, err := exec.Command(moatBin, "postalias", "-c", conf, "hash:"+file).CombinedOutput(); err != nil {
		t.Fatalf("moat postalias: %v\n%s", err, o)
	}
}

// TestDeliverLocalMaildir is local(8) with home_mailbox = Maildir/: an
// extension address (recipient_delimiter = +) lands in the user's home
// Maildir, owned by the user, with Return-Path, Delivered-To and
// X-Original-To; aliases built with moat's postalias reach a user
// (postmaster), two users (team), a file and a command, both run with
// default_privs because root owns the alias table; a .forward file
// forwards to another user.
func TestDeliverLocalMaildir(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	base := baseDir(t)
	homes := filepath.Join(base, "home")
	mkdirOwned(t, homes, 0o755, 0, 0)
	a := newHomeAccount(t, homes)
	b := newHomeAccount(t, homes)
	nobody := uidOf(t, "nobody") // default_privs
	out := filepath.Join(base, "out")
	// Alias files and commands run as default_privs: their directory
	// must be writable by it, as /var/spool/archive would be.
	mkdirOwned(t, out, 0o1777, 0, 0)
	script := filepath.Join(base, "record.sh")
	writeFile(t, script, "#!/bin/sh\n{ id -u; cat; } > "+out+"/command.tmp && mv "+out+"/command.tmp "+out+"/command\n", 0o755)
	aliases := filepath.Join(base, "aliases")
	writeFile(t, aliases, fmt.Sprintf(`# Postfix-style aliases(5)
postmaster: %s
team: %s,
	%s
archive: %s/archive
runner: "|%s"
`, a.name, a.name, b.name, out, script), 0o644)
	postalias(t, base, aliases)
	writeFile(t, filepath.Join(b.home, ".forward"), a.name+"\n", 0o644)
	if err := os.Chown(filepath.Join(b.home, ".forward"), b.uid, b.gid); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "home_mailbox = Maildir/\nrecipient_delimiter = +\nalias_maps = hash:"+aliases+"\n")
	dom := "@mx.moat.test"
	maildirA := filepath.Join(a.home, "Maildir")

	// user+tag: the extension is kept in the envelope and stripped for
	// the mailbox lookup.
	id := swaksSend(t, s, "sender@example.org", a.name+"+tag"+dom, "tagged", "hello tagged")
	s.waitLog(sentLine("local", id, a.name+"+tag"+dom, "", "local", "2.0.0", "sent", "delivered to maildir"), 20*time.Second)
	f, text := waitMaildirSubject(t, s, maildirA, "tagged")
	if got := ownerOf(t, f); got != a.uid {
		t.Errorf("%s owned by uid %d, want %d", f, got, a.uid)
	}
	if got := ownerOf(t, maildirA); got != a.uid {
		t.Errorf("%s owned by uid %d, want %d", maildirA, got, a.uid)
	}
	for _, h := range []string{
		"Return-Path: <sender@example.org>\n",
		"Delivered-To: " + a.name + "+tag" + dom + "\n",
		"X-Original-To: " + a.name + "+tag" + dom + "\n",
	} {
		if !strings.Contains(text, h) {
			t.Errorf("tagged message lacks %q:\n%s", h, text)
		}
	}
	if !strings.HasPrefix(text, "Return-Path: ") {
		t.Errorf("tagged message does not start with Return-Path:\n%s", text)
	}

	// postmaster: an alias to one user.
	id = swaksSend(t, s, "sender@example.org", "postmaster"+dom, "to postmaster", "hello postmaster")
	fwd := forwardedAs(s, id, "postmaster"+dom, "")
	s.waitLog(`postfix/local\[\d+\]: `+fwd+`: to=<`+regexp.QuoteMeta(a.name+dom)+`>, orig_to=<postmaster@mx\.moat\.test>, relay=local, .*status=sent \(delivered to maildir\)`, 20*time.Second)
	_, text = waitMaildirSubject(t, s, maildirA, "to postmaster")
	for _, h := range []string{"X-Original-To: postmaster" + dom + "\n", "Delivered-To: " + a.name + dom + "\n", "Delivered-To: postmaster" + dom + "\n"} {
		if !strings.Contains(text, h) {
			t.Errorf("postmaster message lacks %q:\n%s", h, text)
		}
	}

	// team: two users; the second forwards to the first with .forward.
	id = swaksSend(t, s, "sender@example.org", "team"+dom, "to team", "hello team")
	fwd = forwardedAs(s, id, "team"+dom, "")
	s.waitLog(sentLine("local", fwd, a.name+dom, "team"+dom, "local", "2.0.0", "sent", "delivered to maildir"), 20*time.Second)
	fwd2 := forwardedAs(s, fwd, b.name+dom, "team"+dom)
	s.waitLog(sentLine("local", fwd2, a.name+dom, "team"+dom, "local", "2.0.0", "sent", "delivered to maildir"), 20*time.Second)
	n := 0
	for _, text := range maildirFiles(maildirA) {
		if strings.Contains(text, "\nSubject: to team\n") {
			n++
			if !strings.Contains(text, "X-Original-To: team"+dom+"\n") {
				t.Errorf("team copy lacks X-Original-To: team%s:\n%s", dom, text)
			}
		}
	}
	// Postfix's local(8) delivers team's two targets in one process, and
	// its duplicate filter drops the .forward copy to the same user: one
	// copy. moat forwards each expansion as a new queue file (the local
	// package's documented difference), so the .forward copy arrives too.
	if n != 2 {
		t.Errorf("%s has %d copies of the team message, want 2 (Postfix: 1)", a.name, n)
	}
	if _, err := os.Stat(filepath.Join(b.home, "Maildir")); err == nil {
		t.Errorf("%s has a Maildir although .forward sends everything to %s", b.name, a.name)
	}

	// archive: a file, written with default_privs.
	id = swaksSend(t, s, "sender@example.org", "archive"+dom, "to archive", "hello archive")
	s.waitLog(sentLine("local", id, "archive"+dom, "", "local", "2.0.0", "sent", "delivered to file: "+out+"/archive"), 20*time.Second)
	text = waitFileContains(t, s, out+"/archive", "Subject: to archive\n")
	if got := ownerOf(t, out+"/archive"); got != nobody {
		t.Errorf("archive owned by uid %d, want default_privs %d", got, nobody)
	}
	if !strings.HasPrefix(text, "From sender@example.org ") || !strings.Contains(text, "Delivered-To: archive"+dom+"\n") {
		t.Errorf("archive file:\n%s", text)
	}

	// runner: a command, run with default_privs.
	id = swaksSend(t, s, "sender@example.org", "runner"+dom, "to runner", "hello runner")
	s.waitLog(sentLine("local", id, "runner"+dom, "", "local", "2.0.0", "sent", "delivered to command: "+script), 20*time.Second)
	text = waitFileContains(t, s, out+"/command", "Subject: to runner\n")
	if !strings.HasPrefix(text, strconv.Itoa(nobody)+"\n") {
		t.Errorf("command ran as %q, want default_privs uid %d", strings.SplitN(text, "\n", 2)[0], nobody)
	}
	if !strings.Contains(text, "Delivered-To: runner"+dom+"\n") || !strings.Contains(text, "\nhello runner\n") {
		t.Errorf("command's stdin:\n%s", text)
	}
}

// mailGroup returns the gid of group mail, the mail spool's group.
func mailGroup(t *testing.T) int {
	t.Helper()
	g, err := user.LookupGroup("mail")
	if err != nil {
		t.Skip("no mail group")
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid
}

// TestDeliverLocalMbox is local(8) with the mbox spool of Debian
// (mail_spool_directory without a trailing "/", root:mail 2775): the
// mailbox is the user's, "From " lines in the body are quoted, and with
// mailbox_size_limit reached the recipient bounces with 5.2.2 and the
// local sender finds the non-delivery notice in its own mailbox.
func TestDeliverLocalMbox(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	base := baseDir(t)
	spool := filepath.Join(base, "spool")
	mkdirOwned(t, spool, 0o2775|os.ModeSetgid, 0, mailGroup(t))
	rcpt := homedAccount(t)
	full := homedAccount(t)
	sender := homedAccount(t)
	// A mailbox already close to mailbox_size_limit.
	fullBox := filepath.Join(spool, full.name)
	old := "From old@example.org Thu Jan  1 00:00:00 2026\nSubject: old\n\n" + strings.Repeat("old mail line\n", 240) + "\n"
	writeFile(t, fullBox, old, 0o600)
	if err := os.Chown(fullBox, full.uid, mailGroup(t)); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "mail_spool_directory = "+spool+"\nmessage_size_limit = 4000\nmailbox_size_limit = 4000\n")
	dom := "@mx.moat.test"

	id := swaksSend(t, s, "sender@example.org", rcpt.name+dom, "mbox test", "first line\nFrom the start of a line\n>From already quoted\nlast line")
	s.waitLog(sentLine("local", id, rcpt.name+dom, "", "local", "2.0.0", "sent", "delivered to mailbox"), 20*time.Second)
	box := filepath.Join(spool, rcpt.name)
	text := waitFileContains(t, s, box, "last line\n")
	if got := ownerOf(t, box); got != rcpt.uid {
		t.Errorf("%s owned by uid %d, want %d", box, got, rcpt.uid)
	}
	if !strings.HasPrefix(text, "From sender@example.org ") {
		t.Errorf("mbox does not start with a From_ line:\n%s", text)
	}
	for _, want := range []string{
		"\nReturn-Path: <sender@example.org>\n",
		"\nX-Original-To: " + rcpt.name + dom + "\n",
		"\nDelivered-To: " + rcpt.name + dom + "\n",
		"\n>From the start of a line\n",
		// local(8) quotes "From " lines only (mboxo), not ">From ".
		"\n>From already quoted\n",
		"\nlast line\n\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("mbox lacks %q:\n%s", want, text)
		}
	}

	// The full mailbox: bounced, and the notice reaches the sender.
	id = swaksSend(t, s, sender.name+dom, full.name+dom, "too much", strings.Repeat("new mail line\n", 60))
	line := s.waitLog(sentLine("local", id, full.name+dom, "", "local", "5.2.2", "bounced", `.*File too large`), 20*time.Second)
	if want := "(cannot update mailbox " + fullBox + " for user " + full.name + ". error writing message: File too large)"; !strings.HasSuffix(line, want) {
		// Postfix's local(8) prefixes mail_copy()'s text with the
		// mailbox and user (internal/delivery/mbox's doc says the
		// caller does); moat's local agent does not yet.
		t.Logf("DIFFERENCE: bounce reason %q, Postfix writes %q", line, want)
	}
	// bounce(8)'s RFC 3464 report: the delivery-status part names the
	// queue ID, and the returned message follows (bounce_size_limit).
	notice := waitFileContains(t, s, filepath.Join(spool, sender.name), "X-Postfix-Queue-ID: "+id+"\n")
	if !strings.Contains(notice, "Subject: too much\n") || !strings.Contains(notice, "message/delivery-status") {
		t.Errorf("the non-delivery notice lacks the delivery-status part or the returned message:\n%s", notice)
	}
	for _, want := range []string{"From MAILER-DAEMON ", "\nReturn-Path: <>\n", "\nSubject: Undelivered Mail Returned to Sender\n", "<" + full.name + dom + ">", "File too large"} {
		if !strings.Contains(notice, want) {
			t.Errorf("non-delivery notice lacks %q:\n%s", want, notice)
		}
	}
	if b, _ := os.ReadFile(fullBox); string(b) != old {
		t.Errorf("the full mailbox changed:\n%s", b)
	}
	s.waitLog(`postfix/qmgr\[\d+\]: `+id+`: removed`, 10*time.Second)
}

// TestDeliverVirtual is virtual(8): virtual_mailbox_maps names a
// Maildir (trailing "/") and an mbox file under virtual_mailbox_base,
// written as virtual_uid_maps = static:5000; an address of the domain
// that the table lacks is refused at RCPT with 550 5.1.1
// (smtpd_reject_unlisted_recipient's default; without the table's name,
// moat's show_user_unknown_table_name = no, docs/DEFAULTS.md).
func TestDeliverVirtual(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	base := baseDir(t)
	vbase := filepath.Join(base, "vmail")
	mkdirOwned(t, vbase, 0o755, 5000, 5000)
	writeFile(t, filepath.Join(base, "vmailbox"), "alice@virt.test virt.test/alice/\nbob@virt.test bob.mbox\n", 0o644)
	s := startServer(t, "virtual_mailbox_domains = virt.test\n"+
		"virtual_mailbox_base = "+vbase+"\n"+
		"virtual_mailbox_maps = texthash:"+base+"/vmailbox\n"+
		"virtual_uid_maps = static:5000\nvirtual_gid_maps = static:5000\n")
	d := dial(t, s.addr())
	d.expect("220")
	d.cmd("EHLO client.example", "250")
	d.cmd("MAIL FROM:<sender@example.org>", "250")
	d.cmd("RCPT TO:<nobody@virt.test>", "550 5.1.1 <nobody@virt.test>: Recipient address rejected: User unknown")
	d.cmd("RCPT TO:<alice@virt.test>", "250")
	d.cmd("RCPT TO:<bob@virt.test>", "250")
	d.cmd("DATA", "354")
	d.send("Subject: virtual\r\n\r\nFrom a virtual sender\r\nhello\r\n.\r\n")
	id := strings.TrimPrefix(d.expect("250 2.0.0 Ok: queued as ")[0], "250 2.0.0 Ok: queued as ")
	d.cmd("QUIT", "221")

	s.waitLog(sentLine("virtual", id, "alice@virt.test", "", "virtual", "2.0.0", "sent", "delivered to maildir"), 20*time.Second)
	s.waitLog(sentLine("virtual", id, "bob@virt.test", "", "virtual", "2.0.0", "sent", "delivered to mailbox"), 20*time.Second)
	f, text := waitMaildirSubject(t, s, filepath.Join(vbase, "virt.test", "alice"), "virtual")
	for _, p := range []string{f, filepath.Join(vbase, "virt.test", "alice"), filepath.Join(vbase, "virt.test")} {
		if got := ownerOf(t, p); got != 5000 {
			t.Errorf("%s owned by uid %d, want 5000", p, got)
		}
	}
	for _, want := range []string{"Return-Path: <sender@example.org>\n", "\nDelivered-To: alice@virt.test\n", "\nX-Original-To: alice@virt.test\n", "\nFrom a virtual sender\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("alice's message lacks %q:\n%s", want, text)
		}
	}
	box := filepath.Join(vbase, "bob.mbox")
	text = waitFileContains(t, s, box, "\nhello\n")
	if got := ownerOf(t, box); got != 5000 {
		t.Errorf("%s owned by uid %d, want 5000", box, got)
	}
	for _, want := range []string{"From sender@example.org ", "\nDelivered-To: bob@virt.test\n", "\n>From a virtual sender\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("bob's mbox lacks %q:\n%s", want, text)
		}
	}
	s.waitLog(`postfix/smtpd\[\d+\]: NOQUEUE: reject: RCPT from \S+: 550 5\.1\.1 <nobody@virt\.test>: Recipient address rejected: User unknown; from=<sender@example\.org> to=<nobody@virt\.test> proto=ESMTP helo=<client\.example>`, 10*time.Second)
}

// TestDeliverMailboxCommand is local(8)'s mailbox_command: the command
// runs as the recipient with the environment local(8) documents ("EXTERNAL
// COMMAND DELIVERY": USER, HOME, LOCAL, EXTENSION, DOMAIN, RECIPIENT,
// SENDER, ORIGINAL_RECIPIENT), in the user's home, and gets the message
// with the From_ line, Return-Path and Delivered-To.
func TestDeliverMailboxCommand(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	base := baseDir(t)
	homes := filepath.Join(base, "home")
	mkdirOwned(t, homes, 0o755, 0, 0)
	u := newHomeAccount(t, homes)
	script := filepath.Join(base, "mda.sh")
	writeFile(t, script, `#!/bin/sh
f=$HOME/mda.out
{ echo "uid=$(id -u)"; for v in USER HOME LOCAL EXTENSION DOMAIN RECIPIENT SENDER ORIGINAL_RECIPIENT; do eval "echo $v=\$$v"; done; echo "pwd=$(pwd)"; echo --; cat; } > $f.tmp && mv $f.tmp $f
`, 0o755)
	s := startServer(t, "mailbox_command = "+script+"\nrecipient_delimiter = +\n")
	dom := "@mx.moat.test"
	id := swaksSend(t, s, "sender@example.org", u.name+"+box"+dom, "via mda", "hello mda")
	s.waitLog(sentLine("local", id, u.name+"+box"+dom, "", "local", "2.0.0", "sent", "delivered to command: "+regexp.QuoteMeta(script)), 20*time.Second)
	out := filepath.Join(u.home, "mda.out")
	text := waitFileContains(t, s, out, "\nhello mda\n")
	if got := ownerOf(t, out); got != u.uid {
		t.Errorf("%s owned by uid %d, want %d", out, got, u.uid)
	}
	for _, want := range []string{
		"uid=" + strconv.Itoa(u.uid) + "\n",
		"\nUSER=" + u.name + "\n",
		"\nHOME=" + u.home + "\n",
		"\nLOCAL=" + u.name + "+box\n",
		"\nEXTENSION=box\n",
		"\nDOMAIN=mx.moat.test\n",
		"\nRECIPIENT=" + u.name + "+box" + dom + "\n",
		"\nSENDER=sender@example.org\n",
		"\nORIGINAL_RECIPIENT=" + u.name + "+box" + dom + "\n",
		"\npwd=" + u.home + "\n",
		// local(8) prepends the From_ line for commands, too.
		"--\nFrom sender@example.org  ",
		"\nReturn-Path: <sender@example.org>\n",
		"\nDelivered-To: " + u.name + "+box" + dom + "\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("mailbox_command's record lacks %q:\n%s", want, text)
		}
	}
}
