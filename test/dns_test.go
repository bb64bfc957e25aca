package test

import (
	"bufio"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"testing"
	"time"

	"moat/internal/testutil/dnsserver"
)

// TestDNSJailedSMTPD: a chroot = y smtpd, running as mail_owner inside the
// queue directory, still resolves. With dns_servers pointing at a loopback
// DNS server it verifies a client's name over DNS (PTR, then A) from inside
// the jail; with the system configuration it reads /etc/resolv.conf and
// /etc/hosts before entering the jail (as Postfix's copies in the queue
// directory's etc/ serve its jailed smtpd), so 127.0.0.1 is "localhost".
func TestDNSJailedSMTPD(t *testing.T) {
	needRoot(t)
	t.Parallel()
	if _, err := user.Lookup("postfix"); err != nil {
		t.Skip("no postfix account (mail_owner)")
	}
	ns := dnsserver.Start(t,
		"10.0.0.127.in-addr.arpa. IN PTR good.moat.test.",
		"good.moat.test. IN A 127.0.0.10",
		"11.0.0.127.in-addr.arpa. IN PTR forged.moat.test.",
		"forged.moat.test. IN A 192.0.2.11",
		"12.0.0.127.dnsbl.moat.test. IN A 127.0.0.2",
		`12.0.0.127.dnsbl.moat.test. IN TXT "listed for the test"`,
	)
	masterCF := `127.0.0.1:{{PORT}} inet n - y - - smtpd
qmgr      unix  n       -       n       300     1       qmgr
anvil     unix  -       -       n       -       1       anvil
`
	s := startWithMaster(t, "dns_servers = "+ns.Addr()+"\nsmtpd_client_restrictions = reject_rbl_client dnsbl.moat.test\n", masterCF)
	s.waitLog(`postfix/master\[\d+\]: daemon started`, 15*time.Second)
	for _, c := range []struct{ from, logged string }{
		{"127.0.0.10", `connect from good\.moat\.test\[127\.0\.0\.10\]`},
		{"127.0.0.11", `connect from unknown\[127\.0\.0\.11\]`},
	} {
		d := dialFromAddr(t, s.addr(), c.from)
		d.expect("220 ")
		d.cmd("QUIT", "221")
		s.waitLog(`postfix/smtpd\[\d+\]: `+c.logged, 10*time.Second)
	}
	s.waitLog(`warning: hostname forged\.moat\.test does not resolve to address 127\.0\.0\.11`, 5*time.Second)

	// The restrictions' lookups leave the jail too: a DNS-listed client
	// is refused with the list's TXT, an unlisted one is not.
	d := dialFromAddr(t, s.addr(), "127.0.0.12")
	d.expect("220 ")
	d.cmd("HELO client.example", "250")
	d.cmd("MAIL FROM:<a@example.org>", "250")
	d.cmd("RCPT TO:<user@mx.moat.test>", "554 5.7.1 Service unavailable; Client host [127.0.0.12] blocked using dnsbl.moat.test; listed for the test")
	d = dialFromAddr(t, s.addr(), "127.0.0.10")
	d.expect("220 ")
	d.cmd("HELO client.example", "250")
	d.cmd("MAIL FROM:<a@example.org>", "250")
	d.cmd("RCPT TO:<user@mx.moat.test>", "250")
	if ns.Queries() < 4 {
		t.Errorf("the DNS server answered %d questions, want PTR and A for each client", ns.Queries())
	}

	// The system resolver configuration: hosts(5) was read before the
	// chroot, and the jail holds the copies Postfix's layout expects.
	sys := startWithMaster(t, "", masterCF)
	sys.waitLog(`postfix/master\[\d+\]: daemon started`, 15*time.Second)
	d = dial(t, sys.addr())
	d.expect("220 ")
	d.cmd("QUIT", "221")
	sys.waitLog(`postfix/smtpd\[\d+\]: connect from localhost\[127\.0\.0\.1\]`, 10*time.Second)
	for _, f := range []string{"hosts", "resolv.conf"} {
		if _, err := os.Stat(filepath.Join(sys.dir, "spool", "etc", f)); err != nil {
			t.Errorf("the jail lacks etc/%s: %v", f, err)
		}
	}
}

// dialFromAddr connects from a chosen loopback source address (all of
// 127/8 is local on Linux), so one server sees clients with different
// reverse names.
func dialFromAddr(t *testing.T, addr, local string) *dialogue {
	t.Helper()
	dl := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := dl.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &dialogue{t: t, c: c, r: bufio.NewReader(c)}
}
