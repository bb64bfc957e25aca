package test

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startWithFiles is startWithMaster with extra files (tables) written
// into the server's directory before it starts, so main.cf may name them.
func startWithFiles(t *testing.T, extra, masterCF string, files map[string]string) *server {
	t.Helper()
	dir := t.TempDir()
	prepareDir(t, dir)
	s := &server{t: t, dir: dir, port: freePort(t)}
	files["main.cf"] = strings.ReplaceAll(baseMainCF+extra, "{{DIR}}", dir)
	files["master.cf"] = strings.ReplaceAll(masterCF, "{{PORT}}", strconv.Itoa(s.port))
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// TestUnlistedRecipientJailed is issue 4's seed case: a chroot = y smtpd
// with Postfix's default local_recipient_maps = proxy:unix:passwd.byname
// $alias_maps (proxy_read_maps left at its default, which covers them)
// accepts an existing account and an alias, and refuses an unknown user
// with 550 5.1.1 "User unknown in local recipient table", while /proc shows
// the smtpd child jailed in the queue directory. The account is created
// after the server started and exists only in the real /etc/passwd, which
// the jailed child cannot read: it can only have been found through the
// proxymap child.
func TestUnlistedRecipientJailed(t *testing.T) {
	needRoot(t)
	t.Parallel()
	if _, err := user.Lookup("postfix"); err != nil {
		t.Skip("no postfix account (mail_owner)")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("no useradd")
	}
	s := startWithFiles(t, `smtpd_peername_lookup = no
show_user_unknown_table_name = yes
alias_maps = texthash:{{DIR}}/tables/aliases
local_recipient_maps = proxy:unix:passwd.byname $alias_maps
`, `127.0.0.1:{{PORT}} inet n - y - - smtpd
qmgr      unix  n       -       n       300     1       qmgr
local     unix  -       n       n       -       -       local
proxymap  unix  -       -       n       -       -       proxymap
`, map[string]string{"tables/aliases": "team root\n"})
	s.waitLog(`postfix/master\[\d+\]: daemon started`, 15*time.Second)

	spool := filepath.Join(s.dir, "spool")
	smtpd := s.childPIDs(fmt.Sprintf("127.0.0.1:%d/inet", s.port))
	if len(smtpd) != 1 {
		t.Fatalf("smtpd children %v, want one", smtpd)
	}
	if root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", smtpd[0])); err != nil || root != spool {
		t.Fatalf("smtpd root %q (%v), want the queue directory %s", root, err, spool)
	}
	if pm := s.childPIDs("proxymap/unix"); len(pm) != 1 {
		t.Fatalf("proxymap children %v, want one", pm)
	}

	name := fmt.Sprintf("moatlr%d", os.Getpid()%100000)
	if out, err := exec.Command("useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	if b, err := os.ReadFile(filepath.Join(spool, "etc", "passwd")); err == nil && strings.Contains(string(b), name+":") {
		t.Fatalf("the jail has a passwd file listing %s", name)
	}

	d := dial(t, s.addr())
	d.expect("220")
	d.cmd("EHLO client.example", "250")
	d.cmd("MAIL FROM:<sender@example.org>", "250")
	// Refused before any recipient was accepted: no queue file yet,
	// so the record says NOQUEUE, as Postfix's does.
	want := "550 5.1.1 <nosuchuser@mx.moat.test>: Recipient address rejected: User unknown in local recipient table"
	d.cmd("RCPT TO:<nosuchuser@mx.moat.test>", want)
	d.cmd("RCPT TO:<"+name+"@mx.moat.test>", "250 2.1.5")
	d.cmd("RCPT TO:<"+name+"@MOAT.TEST>", "250 2.1.5")
	d.cmd("RCPT TO:<team@localhost>", "250 2.1.5")
	d.cmd("RCPT TO:<postmaster@mx.moat.test>", "250 2.1.5")
	d.cmd("RCPT TO:<nosuchuser@moat.test>", "550 5.1.1")
	// Mail to someone else is still outside the check.
	if r := d.cmd("RCPT TO:<someone@example.net>", ""); !strings.Contains(strings.Join(r, " "), "Relay access denied") {
		t.Errorf("other domain: %q, want a relay refusal", r)
	}
	d.cmd("QUIT", "221")
	s.waitLog(fmt.Sprintf(`postfix/smtpd\[%d\]: NOQUEUE: reject: RCPT from [^:]+: %s; from=<sender@example.org> to=<nosuchuser@mx.moat.test> proto=ESMTP helo=<client.example>`,
		smtpd[0], regexpQuote(want)), 5*time.Second)
}

// TestVirtualAliasDelivered: virtual_alias_maps rewrites a recipient
// before the message is queued, so the mail reaches the alias's target,
// and an unknown address of a virtual alias domain is refused at RCPT.
func TestVirtualAliasDelivered(t *testing.T) {
	t.Parallel()
	s := startWithFiles(t, `virtual_alias_domains = hosted.test
virtual_alias_maps = texthash:{{DIR}}/virtual
canonical_maps = inline:{ {old@mx.moat.test=renamed@mx.moat.test} }
`, "127.0.0.1:{{PORT}} inet n - n - - smtpd\n", map[string]string{
		"virtual": "info@hosted.test valias1@mx.moat.test, valias2\n",
	})
	d := dial(t, s.addr())
	d.expect("220")
	d.cmd("EHLO client.example", "250")
	d.cmd("MAIL FROM:<sender@example.org>", "250")
	d.cmd("RCPT TO:<nobody@hosted.test>", "550 5.1.1 <nobody@hosted.test>: Recipient address rejected: User unknown")
	d.cmd("RCPT TO:<info@hosted.test>", "250")
	d.cmd("RCPT TO:<old@mx.moat.test>", "250")
	d.cmd("DATA", "354")
	d.send("Subject: alias\r\n\r\nhello\r\n.\r\n")
	d.expect("250 2.0.0 Ok: queued as")
	d.cmd("QUIT", "221")
	for _, u := range []string{"valias1", "valias2", "renamed"} {
		s.waitDelivered(u, 1, 20*time.Second)
	}
}

// regexpQuote escapes a reply for waitLog's regular expression.
func regexpQuote(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
