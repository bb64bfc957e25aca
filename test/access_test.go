package test

// End-to-end tests of issue 6 (access control) against the real binary:
// the seeds' restriction blocks verbatim (test/testdata/access), swaks and
// raw SMTP from inside and outside mynetworks (distinct 127.0.0.x source
// addresses), the classic open-relay forms, DNS lists served by a loopback
// DNS server, greylisting through the real postgrey, and the reject lines
// checked with Debian's fail2ban-regex and its stock postfix filter.

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/internal/testutil/dnsserver"
	"moat/internal/testutil/policyserver"
	"moat/internal/testutil/postgrey"
)

// Source addresses: mynetworks in the seed 002 configuration is
// 127.0.0.0/25, so insider is inside and the others are outside.
const (
	insider  = "127.0.0.10"
	outsider = "127.0.0.200" // has forward-confirmed reverse DNS
	rblHost  = "127.0.0.166" // listed in sbl.spamhaus.org
	noPTR    = "127.0.0.203" // no reverse DNS
	rejIP    = "127.0.0.201" // in reject_client as a whole address
	rejNet   = "127.0.1.5"   // in reject_client's partial network 127.0.1
)

// accessDNS is the DNS the access tests see: reverse and forward names of
// the test clients, a sender domain with an MX, and one DNSBL listing.
func accessDNS(t *testing.T) *dnsserver.Server {
	return dnsserver.Start(t,
		"200.0.0.127.in-addr.arpa. PTR client.example.net.",
		"client.example.net. A 127.0.0.200",
		"10.0.0.127.in-addr.arpa. PTR inside.example.net.",
		"inside.example.net. A 127.0.0.10",
		"166.0.0.127.in-addr.arpa. PTR listed.example.net.",
		"listed.example.net. A 127.0.0.166",
		"201.0.0.127.in-addr.arpa. PTR rejected.example.net.",
		"rejected.example.net. A 127.0.0.201",
		"5.1.0.127.in-addr.arpa. PTR rejnet.example.net.",
		"rejnet.example.net. A 127.0.1.5",
		"example.net. MX 10 mx.example.net.",
		"mx.example.net. A 127.0.0.250",
		"spam.com. MX 10 mx.example.net.",
		"spam.org. MX 10 mx.example.net.",
		"166.0.0.127.sbl.spamhaus.org. A 127.0.0.2",
		`166.0.0.127.sbl.spamhaus.org. TXT "listed for testing"`,
	)
}

// accessFiles reads test/testdata/access files, with {{DIR}} replaced.
func accessFile(t *testing.T, name, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "access", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "{{DIR}}", dir)
}

// startAccess starts moat with baseMainCF plus extra, the given master.cf
// ({{PORT}} is the port the harness waits on; more ports come from
// ports), and tables written and, for names in hashed, built with moat's
// postmap before the start.
func startAccess(t *testing.T, extra, masterCF string, tables map[string]string, hashed []string, ports map[string]int) *server {
	t.Helper()
	dir := t.TempDir()
	prepareDir(t, dir)
	s := &server{t: t, dir: dir, port: freePort(t)}
	for name, data := range tables {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	masterCF = strings.ReplaceAll(masterCF, "{{PORT}}", strconv.Itoa(s.port))
	for k, v := range ports {
		masterCF = strings.ReplaceAll(masterCF, "{{"+k+"}}", strconv.Itoa(v))
	}
	files := map[string]string{
		"main.cf":   strings.ReplaceAll(baseMainCF+extra, "{{DIR}}", dir),
		"master.cf": masterCF,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range hashed {
		if out, err := runTool(t, 30*time.Second, "", moatBin, "postmap", "-c", dir, "hash:"+filepath.Join(dir, name)); err != nil {
			t.Fatalf("postmap %s: %v\n%s", name, err, out)
		}
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// swaksRcpt runs swaks from source address src up to RCPT and returns the
// first refusal it reports ("554 5.7.1 ..."), or "" when every command
// was accepted.
func swaksRcpt(t *testing.T, addr, src, helo, from, to string) string {
	t.Helper()
	out, _ := runTool(t, 30*time.Second, "", "swaks", "--server", addr, "--local-interface", src,
		"--helo", helo, "--from", from, "--to", to, "--quit-after", "RCPT", "--timeout", "20")
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "<** "); ok {
			return strings.TrimSpace(rest)
		}
	}
	if !strings.Contains(out, "~> RCPT TO") && !strings.Contains(out, "-> RCPT TO") {
		t.Fatalf("swaks did not reach RCPT:\n%s", out)
	}
	return ""
}

// rawSession is an SMTP conversation from a chosen source address, for
// the exact address forms swaks would rewrite or quote.
func rawSession(t *testing.T, addr, src string) *dialogue {
	t.Helper()
	c, err := dialFrom(src, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	d := &dialogue{t: t, c: c, r: bufio.NewReader(c)}
	d.expect("220 ")
	return d
}

// step sends one command and returns its (last) reply line.
func (d *dialogue) step(line string) string {
	d.t.Helper()
	d.send(line + "\r\n")
	r := d.reply()
	return r[len(r)-1]
}

// refused reports whether a reply refuses (4xx or 5xx).
func refused(reply string) bool {
	return len(reply) > 0 && (reply[0] == '4' || reply[0] == '5')
}

// rcptCase is one swaks conversation and the refusal expected at or before
// RCPT (a regular expression matched against swaks' first "<**" line), or
// "" for acceptance.
type rcptCase struct {
	name, src, helo, from, to, want string
}

func runRcptCases(t *testing.T, addr string, cases []rcptCase) {
	t.Helper()
	for _, tc := range cases {
		got := swaksRcpt(t, addr, tc.src, tc.helo, tc.from, tc.to)
		switch {
		case tc.want == "" && got != "":
			t.Errorf("%s: refused with %q, want accepted", tc.name, got)
		case tc.want != "" && !regexp.MustCompile(tc.want).MatchString(got):
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestSeed001Restrictions: seed 001's client, sender and HELO restriction
// blocks with its tables (testdata/access/seed001-main.cf), its nine DNS
// lists answered by a loopback DNS server. Each check refuses what it
// should with Postfix's reply, mynetworks skips the client and HELO checks
// but not the sender table, and the banner hides the version.
func TestSeed001Restrictions(t *testing.T) {
	t.Parallel()
	dns := accessDNS(t)
	s := startAccess(t, "dns_servers = "+dns.Addr()+"\nmynetworks = 127.0.0.0/25\n"+accessFile(t, "seed001-main.cf", "{{DIR}}"),
		"127.0.0.1:{{PORT}} inet n - n - - smtpd\n",
		map[string]string{
			"reject_client": accessFile(t, "reject_client", ""),
			"reject_sender": accessFile(t, "reject_sender", ""),
			"ok-ips":        accessFile(t, "ok-ips", ""),
		}, []string{"reject_client", "reject_sender", "ok-ips"}, nil)
	const good, local, remote = "sender@example.net", "user@mx.moat.test", "remote@elsewhere.example"
	runRcptCases(t, s.addr(), []rcptCase{
		{"outsider with DNS", outsider, "client.example.net", good, local, ""},
		{"DNS-listed client", rblHost, "client.example.net", good, local,
			`^554 5\.7\.1 Service unavailable; Client host \[127\.0\.0\.166\] blocked using sbl\.spamhaus\.org; listed for testing$`},
		{"reject_client address", rejIP, "client.example.net", good, local,
			`^554 5\.7\.1 <rejected\.example\.net\[127\.0\.0\.201\]>: Client host rejected: Access denied$`},
		{"reject_client partial network", rejNet, "client.example.net", good, local,
			`^554 5\.7\.1 <rejnet\.example\.net\[127\.0\.1\.5\]>: Client host rejected: Access denied$`},
		{"no reverse DNS", noPTR, "client.example.net", good, local,
			`^450 4\.7\.\d+ Client host rejected: cannot find your hostname, \[127\.0\.0\.203\]$`},
		{"reject_sender address", outsider, "client.example.net", "spam@spam.com", local,
			`^554 5\.7\.1 <spam@spam\.com>: Sender address rejected: Access denied$`},
		{"reject_sender domain", outsider, "client.example.net", "anyone@spam.org", local,
			`^554 5\.7\.1 <anyone@spam\.org>: Sender address rejected: Access denied$`},
		{"unknown sender domain", outsider, "client.example.net", "someone@nosuch.example", local,
			`^450 4\.1\.8 <someone@nosuch\.example>: Sender address rejected: Domain not found$`},
		{"non-FQDN sender", outsider, "client.example.net", "someone", local,
			`^504 5\.5\.2 <someone>: Sender address rejected: need fully-qualified address$`},
		{"HELO in ok-ips without DNS", outsider, "alor.aaa.jp", good, local, ""},
		{"unknown HELO", outsider, "nosuch.example", good, local,
			`^450 4\.7\.1 <nosuch\.example>: Helo command rejected: Host not found$`},
		{"invalid HELO", outsider, "bad!name", good, local,
			`^501 5\.5\.2 <bad!name>: Helo command rejected: Invalid name$`},
		{"outsider relay", outsider, "client.example.net", good, remote,
			`^454 4\.7\.1 <remote@elsewhere\.example>: Relay access denied$`},
		{"insider: no client or HELO checks, may relay", insider, "nosuch.example", good, remote, ""},
		{"insider: the sender table still applies", insider, "nosuch.example", "spam@spam.com", remote,
			`^554 5\.7\.1 <spam@spam\.com>: Sender address rejected: Access denied$`},
	})
	// smtpd_helo_required, disable_vrfy_command, smtpd_banner.
	d := rawSession(t, s.addr(), outsider)
	if got := d.step("MAIL FROM:<" + good + ">"); !strings.HasPrefix(got, "503 5.5.1 Error: send HELO/EHLO first") {
		t.Errorf("MAIL without HELO: %q", got)
	}
	if got := d.step("VRFY user"); !strings.HasPrefix(got, "502 5.5.1 VRFY command is disabled") {
		t.Errorf("VRFY: %q", got)
	}
	d.step("QUIT")
	c, err := dialFrom(outsider, s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	banner, _ := greeting(c)
	if banner != "220 mx.moat.test ESMTP moat" {
		t.Errorf("banner %q, want $myhostname ESMTP $mail_name without a version", banner)
	}
}

// seed002 starts the seed 002 configuration: port 25 ({{PORT}}) and the
// submission row on a second port. The seed leaves local_recipient_maps at
// Postfix's default (the passwd file and aliases), so unknown local users
// are refused; the inline table stands in for the passwd file.
func seed002(t *testing.T) (smtp, submission string) {
	t.Helper()
	sub := freePort(t)
	s := startAccess(t, "smtpd_peername_lookup = no\nlocal_recipient_maps = inline:{ user=1 }\n"+accessFile(t, "seed002-main.cf", ""),
		accessFile(t, "seed002-master.cf", ""), nil, nil, map[string]int{"SUBMISSION": sub})
	return s.addr(), fmt.Sprintf("127.0.0.1:%d", sub)
}

// TestSeed002Submission: seed 002's port 25 rules (relay for mynetworks
// only) and its submission row (nothing but authenticated clients; the
// SASL half belongs to the SASL issue, so here every client is refused).
func TestSeed002Submission(t *testing.T) {
	t.Parallel()
	smtp, sub := seed002(t)
	const from, local, remote = "sender@example.net", "user@mx.moat.test", "remote@elsewhere.example"
	runRcptCases(t, smtp, []rcptCase{
		{"25: insider relays", insider, "client.example.net", from, remote, ""},
		{"25: outsider to a local user", outsider, "client.example.net", from, local, ""},
		{"25: outsider relay", outsider, "client.example.net", from, remote, `^4\d\d 4\.7\.1 <remote@elsewhere\.example>: Relay access denied$`},
	})
	runRcptCases(t, sub, []rcptCase{
		{"587: insider to a local user", insider, "client.example.net", from, local,
			`^554 5\.7\.1 <user@mx\.moat\.test>: Recipient address rejected: Access denied$`},
		{"587: insider relay", insider, "client.example.net", from, remote,
			`^554 5\.7\.1 <remote@elsewhere\.example>: Recipient address rejected: Access denied$`},
		{"587: outsider to a local user", outsider, "client.example.net", from, local,
			`^554 5\.7\.1 <user@mx\.moat\.test>: Recipient address rejected: Access denied$`},
		{"587: outsider relay", outsider, "client.example.net", from, remote, `^4\d\d 4\.7\.1 <remote@elsewhere\.example>: Relay access denied$`},
	})
}

// relayForms are the classic open-relay test addresses (the relay test
// batteries' forms): routing operators in the local part of a local
// domain, source routes, address literals, trailing dots and upper case.
var relayForms = []string{
	"user%elsewhere.example@mx.moat.test",
	`"user@elsewhere.example"@mx.moat.test`,
	`"user%elsewhere.example"@mx.moat.test`,
	"user@elsewhere.example@mx.moat.test",
	"@mx.moat.test:user@elsewhere.example",
	"@mx.moat.test,@localhost:user@elsewhere.example",
	"elsewhere.example!user@mx.moat.test",
	"elsewhere.example!user",
	"user@[192.0.2.99]",
	"user%elsewhere.example@[127.0.0.1]",
	"elsewhere.example!user@[127.0.0.1]",
	`"user@elsewhere.example"@[127.0.0.1]`,
	"user@elsewhere.example.",
	"user%elsewhere.example@mx.moat.test.",
	"USER@ELSEWHERE.EXAMPLE",
	"user%ELSEWHERE.EXAMPLE@MX.MOAT.TEST",
	"user@localhost@elsewhere.example",
	"user%elsewhere.example%mx.moat.test@mx.moat.test",
}

// TestOpenRelayForms: with seed 002's port 25 rules, an outsider is
// refused every relay form (the unqualified bang path elsewhere.example!user
// as an unknown local user: moat's swap_bangpath = no leaves it a local
// part, as Postfix's trivial-rewrite does with that setting), with a real sender, the null sender and a
// forged local sender, while the plain local recipient is accepted (the
// refusals are not blanket). An insider may relay.
func TestOpenRelayForms(t *testing.T) {
	t.Parallel()
	smtp, _ := seed002(t)
	for _, from := range []string{"sender@example.net", "", "user@mx.moat.test"} {
		for _, to := range relayForms {
			t.Run("from <"+from+"> to <"+to+">", func(t *testing.T) {
				d := rawSession(t, smtp, outsider)
				d.step("EHLO client.example.net")
				if got := d.step("MAIL FROM:<" + from + ">"); !strings.HasPrefix(got, "250 ") {
					t.Fatalf("MAIL FROM:<%s>: %q", from, got)
				}
				if got := d.step("RCPT TO:<" + to + ">"); !refused(got) {
					t.Errorf("outsider, MAIL FROM:<%s> RCPT TO:<%s>: %q, want a refusal", from, to, got)
				}
				d.step("QUIT")
			})
		}
	}
	for _, to := range []string{"user@mx.moat.test", "USER@MX.MOAT.TEST", "user@mx.moat.test.", "user@[127.0.0.1]"} {
		d := rawSession(t, smtp, outsider)
		d.step("EHLO client.example.net")
		d.step("MAIL FROM:<>")
		if got := d.step("RCPT TO:<" + to + ">"); !strings.HasPrefix(got, "250 ") {
			t.Errorf("outsider RCPT TO:<%s> (local): %q, want 250", to, got)
		}
		d.step("QUIT")
		d.c.Close()
	}
	d := rawSession(t, smtp, insider)
	d.step("EHLO inside.example.net")
	d.step("MAIL FROM:<sender@mx.moat.test>")
	if got := d.step("RCPT TO:<remote@elsewhere.example>"); !strings.HasPrefix(got, "250 ") {
		t.Errorf("insider relay: %q, want 250", got)
	}
}

// TestPolicyPostgrey: check_policy_service with the real postgrey: the
// first attempt is greylisted (450 with postgrey's text, logged as a
// reject), the retry after the delay is accepted and delivered with
// postgrey's X-Greylist header prepended.
func TestPolicyPostgrey(t *testing.T) {
	t.Parallel()
	const delay = 2
	pg := postgrey.Start(t, delay)
	s := startAccess(t, "smtpd_peername_lookup = no\nsmtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:"+pg+"\n",
		"127.0.0.1:{{PORT}} inet n - n - - smtpd\n", nil, nil, nil)
	send := func(subject string) string {
		out, _ := runTool(t, 30*time.Second, "", "swaks", "--server", s.addr(), "--local-interface", outsider,
			"--helo", "client.example.net", "--from", "sender@example.net", "--to", "user@mx.moat.test",
			"--header", "Subject: "+subject, "--body", "greylisting test", "--timeout", "20")
		return out
	}
	out := send("greylist first")
	if !regexp.MustCompile(`<\*\* 450 4\.2\.0 <user@mx\.moat\.test>: Recipient address rejected: Greylisted`).MatchString(out) {
		t.Fatalf("first attempt not greylisted:\n%s\nlog:\n%s", out, s.log())
	}
	s.waitLog(`NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.200\]: 450 4\.2\.0 <user@mx\.moat\.test>: Recipient address rejected: Greylisted`, 10*time.Second)
	time.Sleep((delay + 1) * time.Second)
	out = send("greylist retry")
	if !swaksQueued.MatchString(out) {
		t.Fatalf("retry after the delay not accepted:\n%s\nlog:\n%s", out, s.log())
	}
	if os.Geteuid() == 0 {
		_, msg := waitMaildirSubject(t, s, s.maildir("user"), "greylist retry")
		if !strings.Contains(msg, "\nX-Greylist: delayed ") && !strings.HasPrefix(msg, "X-Greylist: delayed ") {
			t.Errorf("delivered message lacks postgrey's X-Greylist header:\n%s", msg)
		}
	}
}

// fail2banCounts runs fail2ban-regex with Debian's stock postfix filter in
// mode over logFile and returns its line counts.
func fail2banCounts(t *testing.T, logFile, mode string) (lines, matched, missed int, out string) {
	t.Helper()
	out, err := runTool(t, 120*time.Second, "", "fail2ban-regex", logFile, "postfix[mode="+mode+"]")
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Lines: (\d+) lines, \d+ ignored, (\d+) matched, (\d+) missed`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("fail2ban-regex printed no counts:\n%s", out)
	}
	lines, _ = strconv.Atoi(m[1])
	matched, _ = strconv.Atoi(m[2])
	missed, _ = strconv.Atoi(m[3])
	return lines, matched, missed, out
}

// checkFail2ban runs the cases against s, then fail2ban-regex with
// Debian's stock postfix filter (/etc/fail2ban/filter.d/postfix.conf) in
// modes normal, more and aggressive over moat's reject lines: every one
// must match.
func checkFail2ban(t *testing.T, s *server, cases []rcptCase) {
	t.Helper()
	runRcptCases(t, s.addr(), cases)
	s.waitLogCount(` reject: `, len(cases), 10*time.Second)
	var rejects []string
	for _, line := range strings.Split(s.log(), "\n") {
		if strings.Contains(line, " reject: ") {
			rejects = append(rejects, line)
		}
	}
	if len(rejects) != len(cases) {
		t.Fatalf("%d reject lines for %d refused commands:\n%s", len(rejects), len(cases), strings.Join(rejects, "\n"))
	}
	file := filepath.Join(t.TempDir(), "rejects.log")
	if err := os.WriteFile(file, []byte(strings.Join(rejects, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"normal", "more", "aggressive"} {
		lines, matched, missed, out := fail2banCounts(t, file, mode)
		if lines != len(rejects) || matched != len(rejects) || missed != 0 {
			t.Errorf("mode %s: %d lines, %d matched, %d missed; want all %d reject lines matched:\n%s",
				mode, lines, matched, missed, len(rejects), out)
		}
	}
}

func needFail2ban(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("fail2ban-regex"); err != nil {
		t.Skip("fail2ban-regex is not installed (Debian package fail2ban)")
	}
	if _, err := os.Stat("/etc/fail2ban/filter.d/postfix.conf"); err != nil {
		t.Skip("no stock fail2ban postfix filter")
	}
}

// fail2banFrom is the sender of the fail2ban tests' conversations.
const fail2banFrom = "sender@example.net"

// TestFail2banRelayUsers: relay attempts and unknown local users (from
// several clients) give reject lines that fail2ban's stock postfix filter
// matches. moat's default show_user_unknown_table_name = no leaves "in
// local recipient table" out of the reply (docs/DEFAULTS.md); the filter
// matches "User unknown" either way.
func TestFail2banRelayUsers(t *testing.T) {
	needFail2ban(t)
	t.Parallel()
	s := startAccess(t, "smtpd_peername_lookup = no\nlocal_recipient_maps = inline:{ user=1 }\n",
		"127.0.0.1:{{PORT}} inet n - n - - smtpd\n", nil, nil, nil)
	checkFail2ban(t, s, []rcptCase{
		{"relay", outsider, "client.example.net", fail2banFrom, "remote@elsewhere.example", `Relay access denied`},
		{"relay, other client", noPTR, "client.example.net", "", "x%remote@mx.moat.test", `Relay access denied`},
		{"unknown user", outsider, "client.example.net", fail2banFrom, "nobody@mx.moat.test",
			`^550 5\.1\.1 <nobody@mx\.moat\.test>: Recipient address rejected: User unknown$`},
		{"unknown user, other client", rejIP, "client", fail2banFrom, "ghost@moat.test", `User unknown`},
	})
}

// TestFail2ban: the reject lines moat logs for relay attempts, unknown
// users, DNS-listed clients and bad HELO names all match fail2ban's stock
// postfix filter in modes normal, more and aggressive. Postfix's own 501
// "Invalid name" HELO reply is outside the filter's [45][50][04] codes, for
// Postfix as for moat, so the bad HELOs here are the non-FQDN (504) and
// unknown (450) kinds.
func TestFail2ban(t *testing.T) {
	needFail2ban(t)
	t.Parallel()
	dns := accessDNS(t)
	s := startAccess(t, "dns_servers = "+dns.Addr()+"\n"+
		"local_recipient_maps = inline:{ user=1 }\n"+
		"smtpd_client_restrictions = reject_rbl_client sbl.spamhaus.org\n"+
		"smtpd_helo_restrictions = reject_non_fqdn_helo_hostname, reject_unknown_helo_hostname\n",
		"127.0.0.1:{{PORT}} inet n - n - - smtpd\n", nil, nil, nil)
	checkFail2ban(t, s, []rcptCase{
		{"relay", outsider, "client.example.net", fail2banFrom, "remote@elsewhere.example", `Relay access denied`},
		{"unknown user", outsider, "client.example.net", fail2banFrom, "nobody@mx.moat.test", `^550 5\.1\.1 .*User unknown`},
		{"DNS-listed client", rblHost, "client.example.net", fail2banFrom, "user@mx.moat.test", `^554 5\.7\.1 Service unavailable; Client host \[127\.0\.0\.166\] blocked`},
		{"non-FQDN HELO", outsider, "client", fail2banFrom, "user@mx.moat.test", `^504 5\.5\.2 <client>: Helo command rejected: need fully-qualified hostname`},
		{"unknown HELO", outsider, "nosuch.example", fail2banFrom, "user@mx.moat.test", `^450 4\.7\.1 <nosuch\.example>: Helo command rejected: Host not found`},
	})
}

// TestPolicyService: check_policy_service through moat: the request
// carries the session's attributes at RCPT and END-OF-MESSAGE, the
// server's PREPEND reaches the delivered message, a dead server in the
// braced per-server form with default_action=DUNNO costs nothing but
// Postfix's warning, and a dead server with Postfix's defaults answers
// 451 4.3.5 Server configuration problem.
func TestPolicyService(t *testing.T) {
	t.Parallel()
	rec := policyserver.Start(t, func(r map[string]string) string {
		if r["protocol_state"] == "RCPT" {
			return "PREPEND X-Policy: seen " + r["recipient"]
		}
		return "DUNNO"
	})
	dead := freePort(t) // nobody listens there
	s := startAccess(t, fmt.Sprintf("smtpd_peername_lookup = no\n"+
		"smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:%s,\n"+
		"  check_policy_service { inet:127.0.0.1:%d, default_action=DUNNO, try_limit=1 }\n"+
		"smtpd_end_of_data_restrictions = check_policy_service inet:%s\n",
		rec.Addr(), dead, rec.Addr()),
		"127.0.0.1:{{PORT}} inet n - n - - smtpd\n", nil, nil, nil)
	out, _ := runTool(t, 30*time.Second, "", "swaks", "--server", s.addr(), "--local-interface", outsider,
		"--helo", "client.example.net", "--from", "sender@example.net", "--to", "user@mx.moat.test",
		"--header", "Subject: policy e2e", "--body", "policy test", "--timeout", "20")
	if !swaksQueued.MatchString(out) {
		t.Fatalf("not accepted:\n%s\nlog:\n%s", out, s.log())
	}
	rcpt, eod := rec.Next(t), rec.Next(t)
	want := map[string]string{
		"request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
		"helo_name": "client.example.net", "sender": "sender@example.net", "recipient": "user@mx.moat.test",
		"recipient_count": "0", "client_address": outsider, "client_name": "unknown",
		"reverse_client_name": "unknown", "encryption_protocol": "", "sasl_username": "", "etrn_domain": "",
		"policy_context": "", "compatibility_level": "3.6",
	}
	for k, v := range want {
		if got, ok := rcpt[k]; !ok || got != v {
			t.Errorf("RCPT request %s=%q (present %v), want %q", k, got, ok, v)
		}
	}
	if rcpt["client_port"] == "" || rcpt["mail_version"] == "" {
		t.Errorf("RCPT request lacks client_port or mail_version: %v", rcpt)
	}
	if eod["protocol_state"] != "END-OF-MESSAGE" || eod["recipient_count"] != "1" || eod["queue_id"] == "" {
		t.Errorf("END-OF-MESSAGE request: %v", eod)
	}
	t.Run("attributes", func(t *testing.T) {
		if rcpt["server_address"] != "127.0.0.1" || rcpt["server_port"] != strconv.Itoa(s.port) {
			t.Errorf("server_address=%q server_port=%q", rcpt["server_address"], rcpt["server_port"])
		}
		if rcpt["instance"] == "" || eod["instance"] != rcpt["instance"] {
			t.Errorf("instance %q at RCPT, %q at END-OF-MESSAGE; want one non-empty value", rcpt["instance"], eod["instance"])
		}
		if eod["size"] == "0" {
			t.Error("size=0 at END-OF-MESSAGE")
		}
	})
	s.waitLog(fmt.Sprintf(`warning: problem talking to server 127\.0\.0\.1:%d: Connection refused`, dead), 10*time.Second)
	if os.Geteuid() == 0 {
		_, msg := waitMaildirSubject(t, s, s.maildir("user"), "policy e2e")
		if !strings.Contains(msg, "X-Policy: seen user@mx.moat.test\n") {
			t.Errorf("the policy server's PREPEND is not in the message:\n%s", msg)
		}
	}

	// Postfix's defaults with the server gone: smtpd_policy_service_default_action
	// "451 4.3.5 Server configuration problem" is evaluated as an access
	// action (smtpd_check.c since Postfix 3.0), so the reply names the
	// recipient, and the reject is logged.
	s2 := startAccess(t, fmt.Sprintf("smtpd_peername_lookup = no\nsmtpd_policy_service_retry_delay = 1s\n"+
		"smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:127.0.0.1:%d\n", dead),
		"127.0.0.1:{{PORT}} inet n - n - - smtpd\n", nil, nil, nil)
	got := swaksRcpt(t, s2.addr(), outsider, "client.example.net", "sender@example.net", "user@mx.moat.test")
	if got != "451 4.3.5 <user@mx.moat.test>: Recipient address rejected: Server configuration problem" {
		t.Errorf("dead policy server: %q", got)
	}
	s2.waitLog(`NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.200\]: 451 4\.3\.5 <user@mx\.moat\.test>: Recipient address rejected: Server configuration problem; from=<sender@example\.net> to=<user@mx\.moat\.test> proto=ESMTP helo=<client\.example\.net>`, 10*time.Second)
}

// TestPolicyServiceJailed: "check_policy_service unix:private/policy" in a
// chroot = y smtpd, as Postfix's documentation writes it: the path is
// relative to the queue directory, which is the jail's root, so the
// jailed child reaches a socket the policy server made in
// queue_directory/private.
func TestPolicyServiceJailed(t *testing.T) {
	needRoot(t)
	if _, err := user.Lookup("postfix"); err != nil {
		t.Skip("no postfix account (mail_owner)")
	}
	t.Parallel()
	s := startAccess(t, "smtpd_peername_lookup = no\n"+
		"smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service unix:private/policy\n",
		"127.0.0.1:{{PORT}} inet n - y - - smtpd\n", nil, nil, nil)
	sock := filepath.Join(s.dir, "spool", "private", "policy")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	rec := policyserver.Serve(t, ln, func(map[string]string) string { return "REJECT 5.7.1 jailed policy says no" })
	got := swaksRcpt(t, s.addr(), outsider, "client.example.net", "sender@example.net", "user@mx.moat.test")
	if got != "554 5.7.1 <user@mx.moat.test>: Recipient address rejected: jailed policy says no" {
		t.Errorf("RCPT through the jailed policy socket: %q\nlog:\n%s", got, s.log())
	}
	if r := rec.Next(t); r["recipient"] != "user@mx.moat.test" {
		t.Errorf("policy request %v", r)
	}
}
