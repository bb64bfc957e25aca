package restrict

import (
	"testing"

	mdns "github.com/miekg/dns"

	"moat/internal/config"
	"moat/internal/smtpd"
	"moat/internal/testutil/dnsserver"
)

// zone is the DNS data Postfix's DNS-dependent smtpd_check scripts
// assume (MANIFEST.md), served by a real server on loopback.
var zone = []string{
	"2.0.0.127.dnsbltest.porcupine.org. A 127.0.0.2",
	`2.0.0.127.dnsbltest.porcupine.org. TXT "DNS blocklist test"`,
	"3.0.0.127.dnsbltest.porcupine.org. A 127.0.0.3",
	"example.tld.rhsbl.porcupine.org. A 127.0.0.2",
	`example.tld.rhsbl.porcupine.org. TXT "RHSBL test"`,
	"*.wild.porcupine.org. A 127.0.0.2",
	"example.tld.dnswl.porcupine.org. A 127.0.0.2",
	"spike.porcupine.org. A 168.100.3.2",
	"porcupine.org. MX 10 spike.porcupine.org.",
	"porcupine.org. NS ns.porcupine.org.",
	"ns.porcupine.org. A 168.100.3.75",
	"www.porcupine.org. MX 10 spike.porcupine.org.",
	"nullmx.porcupine.org. MX 0 .",
	"nullmx.porcupine.org. A 168.100.3.9",
	"onlynull.porcupine.org. MX 0 .",
	"postfix.org. MX 10 mx.postfix.org.",
	"mx.postfix.org. A 168.100.3.50",
}

func dnsHarness(t *testing.T, mainCF string) (*harness, *dnsserver.Server) {
	srv := dnsserver.Start(t, zone...)
	h := newHarness(t, "dns_servers = "+srv.Addr()+"\n"+mainCF, nil)
	return h, srv
}

// TestRBL: reject_rbl_client with default_rbl_reply and the TXT reason,
// a reply filter, rbl_reply_maps, and reject_rhsbl_sender.
func TestRBL(t *testing.T) {
	h, _ := dnsHarness(t, "smtpd_client_restrictions = reject_rbl_client dnsbltest.porcupine.org\n"+
		"smtpd_sender_restrictions = reject_rhsbl_sender rhsbl.porcupine.org\n"+
		"smtpd_recipient_restrictions = reject_rbl_client dnsbltest.porcupine.org=127.0.0.[3..11]\n")
	expect(t, "listed", h.client("localhost", "127.0.0.2", 2), "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using dnsbltest.porcupine.org; DNS blocklist test")
	expect(t, "not listed", h.client("spike.porcupine.org", "168.100.3.2", 2), "OK")
	expect(t, "rhsbl", h.mail("user@example.tld"), "554 5.7.1 Service unavailable; Sender address [user@example.tld] blocked using rhsbl.porcupine.org; RHSBL test")
	expect(t, "rhsbl miss", h.mail("user@sdomain.test"), "OK")
	h.client("x", "127.0.0.2", 2)
	expect(t, "filtered out", h.rcpt("u@mx.moat.test"), "OK")
	h.client("x", "127.0.0.3", 2)
	expect(t, "filter match", h.rcpt("u@mx.moat.test"), "554 5.7.1 Service unavailable; Client host [127.0.0.3] blocked using dnsbltest.porcupine.org")

	srv := dnsserver.Start(t, zone...)
	h2 := newHarness(t, "dns_servers = "+srv.Addr()+"\nsmtpd_client_restrictions = reject_rbl_client dnsbltest.porcupine.org\n"+
		"rbl_reply_maps = texthash:@DIR@/rbl\n", map[string]string{"rbl": "dnsbltest.porcupine.org $rbl_code 5.7.9 go away $client_address ($rbl_reason) <$rbl_class>\n"})
	expect(t, "rbl_reply_maps", h2.client("localhost", "127.0.0.2", 2), "554 5.7.9 go away 127.0.0.2 (DNS blocklist test) <Client host>")
}

// TestDNSWL follows smtpd_dnswl: a DNS white list permits, but never past
// reject_unauth_destination.
func TestDNSWL(t *testing.T) {
	h, _ := dnsHarness(t, "smtpd_client_restrictions = permit_dnswl_client wild.porcupine.org, reject\n"+
		"smtpd_recipient_restrictions = permit_rhswl_client dnswl.porcupine.org, reject_unauth_destination\nmydestination = porcupine.org\n")
	expect(t, "dnswl", h.client("spike.porcupine.org", "168.100.3.2", 2), "OK")
	h.l.lists[smtpd.StageConnect] = config.SplitList("permit_dnswl_client porcupine.org, reject")
	expect(t, "not listed", h.client("spike.porcupine.org", "168.100.3.2", 2), "554 5.7.1 <spike.porcupine.org[168.100.3.2]>: Client host rejected: Access denied")
	h.l.lists[smtpd.StageConnect] = nil
	h.client("example.tld", "168.100.3.2", 2)
	expect(t, "rhswl relay", h.rcpt("rname@rdomain"), "554 5.7.1 <rname@rdomain>: Relay access denied")
	expect(t, "rhswl local", h.rcpt("wietse@porcupine.org"), "OK")
}

// TestUnknownDomains follows smtpd_server/smtpd_nullmx: NXDOMAIN, null MX
// and a server failure (defer_if_permit, applied at RCPT).
func TestUnknownDomains(t *testing.T) {
	h, srv := dnsHarness(t, "smtpd_helo_restrictions = reject_unknown_helo_hostname\n"+
		"smtpd_sender_restrictions = reject_unknown_sender_domain\n"+
		"smtpd_recipient_restrictions = reject_unknown_recipient_domain, permit\n")
	srv.Fail("servfail.porcupine.org.", mdns.RcodeServerFailure)
	expect(t, "helo nxdomain", h.helo("nxdomain.porcupine.org"), "450 4.7.1 <nxdomain.porcupine.org>: Helo command rejected: Host not found")
	expect(t, "helo ok", h.helo("spike.porcupine.org"), "OK")
	expect(t, "helo null MX with an address", h.helo("nullmx.porcupine.org"), "OK")
	expect(t, "helo null MX only", h.helo("onlynull.porcupine.org"), "450 4.7.1 <onlynull.porcupine.org>: Helo command rejected: Host not found")
	expect(t, "sender nxdomain", h.mail("user@nxdomain.porcupine.org"), "450 4.1.8 <user@nxdomain.porcupine.org>: Sender address rejected: Domain not found")
	expect(t, "sender nullmx", h.mail("user@nullmx.porcupine.org"), "550 5.7.27 <user@nullmx.porcupine.org>: Sender address rejected: Domain nullmx.porcupine.org does not accept mail (nullMX)")
	expect(t, "sender mx", h.mail("user@www.porcupine.org"), "OK")
	expect(t, "rcpt nullmx", h.rcpt("rname@nullmx.porcupine.org"), "556 5.1.10 <rname@nullmx.porcupine.org>: Recipient address rejected: Domain nullmx.porcupine.org does not accept mail (nullMX)")
	expect(t, "rcpt nxdomain", h.rcpt("rname@nxdomain.porcupine.org"), "450 4.1.2 <rname@nxdomain.porcupine.org>: Recipient address rejected: Domain not found")
	expect(t, "local rcpt", h.rcpt("u@mx.moat.test"), "OK")
	// A temporary failure does not reject at MAIL; it defers the
	// recipient that would otherwise be permitted.
	expect(t, "sender servfail", h.mail("user@servfail.porcupine.org"), "OK")
	expect(t, "rcpt after servfail", h.rcpt("u@mx.moat.test"), "450 4.1.8 <user@servfail.porcupine.org>: Sender address rejected: Domain not found")
}

// TestServerAccess follows smtpd_server: MX, NS and A hosts against an
// access table; an OK from an MX/NS table is refused.
func TestServerAccess(t *testing.T) {
	h, _ := dnsHarness(t, "smtpd_sender_restrictions = check_sender_mx_access inline:{168.100.3.2=reject}\n"+
		"smtpd_helo_restrictions = check_helo_ns_access inline:{168.100.3.75=reject}\n"+
		"smtpd_client_restrictions = check_client_a_access inline:{168.100.3.2=reject}, check_client_mx_access inline:{168.100.3.50=reject}, check_reverse_client_hostname_ns_access inline:{ns.porcupine.org=OK}\n"+
		"smtpd_recipient_restrictions = check_recipient_mx_access inline:{spike.porcupine.org=OK}, permit\n")
	expect(t, "mx", h.mail("foo@www.porcupine.org"), "554 5.7.1 <foo@www.porcupine.org>: Sender address rejected: Access denied")
	expect(t, "mx other", h.mail("foo@postfix.org"), "OK")
	expect(t, "mx nxdomain", h.mail("foo@example.tld"), "OK")
	h.wantLog("Unable to look up MX host example.tld for Sender address foo@example.tld")
	expect(t, "ns", h.helo("www.porcupine.org"), "554 5.7.1 <www.porcupine.org>: Helo command rejected: Access denied")
	expect(t, "ns nxdomain", h.helo("example.tld"), "OK")
	h.wantLog("Unable to look up NS host for example.tld: Host not found")
	expect(t, "a", h.client("spike.porcupine.org", "1.2.3.4", 2), "554 5.7.1 <spike.porcupine.org[1.2.3.4]>: Client host rejected: Access denied")
	expect(t, "a other", h.client("www.porcupine.org", "1.2.3.4", 2), "451 4.3.5 Server configuration error")
	h.wantLog("restriction check_reverse_client_hostname_ns_access returns OK for www.porcupine.org")
	expect(t, "client mx", h.client("postfix.org", "1.2.3.4", 2), "554 5.7.1 <postfix.org[1.2.3.4]>: Client host rejected: Access denied")
	expect(t, "whitelist refused", h.rcpt("u@www.porcupine.org"), "451 4.3.5 Server configuration error")
	h.wantLog("this is not allowed for security reasons")
}

// TestMXBackup: permit_mx_backup accepts a domain that lists this host as
// an MX host, with permit_mx_backup_networks limiting the primaries.
func TestMXBackup(t *testing.T) {
	srv := dnsserver.Start(t, "backup.test. MX 10 primary.test.", "backup.test. MX 20 mx.moat.test.",
		"primary.test. A 192.0.2.10", "other.test. MX 10 primary.test.", "elsewhere.test. MX 10 far.test.", "far.test. A 198.51.100.1")
	h := newHarness(t, "dns_servers = "+srv.Addr()+"\nsmtpd_recipient_restrictions = permit_mx_backup, reject_unauth_destination\n", nil)
	expect(t, "backup", h.rcpt("u@backup.test"), "OK")
	expect(t, "not backup", h.rcpt("u@other.test"), "554 5.7.1 <u@other.test>: Relay access denied")
	expect(t, "local", h.rcpt("u@mx.moat.test"), "OK")
	h2 := newHarness(t, "dns_servers = "+srv.Addr()+"\npermit_mx_backup_networks = 198.51.100.0/24\n"+
		"smtpd_recipient_restrictions = permit_mx_backup, reject_unauth_destination\n", nil)
	expect(t, "primary outside the networks", h2.rcpt("u@backup.test"), "554 5.7.1 <u@backup.test>: Relay access denied")
}
