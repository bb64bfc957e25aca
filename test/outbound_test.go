package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/delivery/smtp/smtpsink"
	"moat/internal/testutil/dnsserver"
)

// appendMainCF adds lines to a stopped server's main.cf.
func appendMainCF(t *testing.T, s *server, lines string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(s.dir, "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(lines); err != nil {
		t.Fatal(err)
	}
}

// sendVia submits one message to s with swaks and returns its queue ID.
func sendVia(t *testing.T, s *server, from, to, body string) string {
	t.Helper()
	out, err := runTool(t, 30*time.Second, "", "swaks",
		"--server", s.addr(), "--helo", "client.example.org",
		"--from", from, "--to", to, "--header", "Subject: outbound", "--body", body)
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`<-\s+250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("swaks saw no 250 queued as:\n%s", out)
	}
	return m[1]
}

// TestOutboundMXToSink: mail for a remote domain goes out through the
// smtp transport to its MX hosts, found through the DNS server named by
// dns_servers: the preferred one is down, the next (Postfix's smtp-sink)
// takes it, and the log line is Postfix's.
func TestOutboundMXToSink(t *testing.T) {
	t.Parallel()
	port := smtpsink.FreePort(t, "127.0.0.31", "127.0.0.32")
	sink := smtpsink.Start(t, "127.0.0.32", port)
	ns := dnsserver.Start(t,
		"remote.test. IN MX 10 mx1.remote.test.",
		"remote.test. IN MX 20 mx2.remote.test.",
		"mx1.remote.test. IN A 127.0.0.31",
		"mx2.remote.test. IN A 127.0.0.32")
	s := startServer(t, "mynetworks = 127.0.0.0/8\n"+
		"dns_servers = "+ns.Addr()+"\n"+
		"smtp_tcp_port = "+port+"\n")
	id := sendVia(t, s, "user@moat.test", "someone@remote.test", "hello out there\n.leading dot")
	relay := regexp.QuoteMeta(fmt.Sprintf("mx2.remote.test[127.0.0.32]:%s", port))
	s.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<someone@remote\.test>, relay=`+relay+
		`, delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok\)`, 30*time.Second)
	s.waitLog(`postfix/smtp\[\d+\]: connect to mx1\.remote\.test\[127\.0\.0\.31\]:`+port+`: Connection refused`, 5*time.Second)
	m := sink.Messages()
	if len(m) != 1 || !strings.Contains(m[0], "X-Rcpt-Args: <someone@remote.test>") ||
		!strings.Contains(m[0], "X-Helo-Args: mx.moat.test\n") || !strings.Contains(m[0], "\nhello out there\n.leading dot\n") {
		t.Errorf("sink got %q", m)
	}
}

// TestOutboundRelayhostToMoat: relayhost = [127.0.0.1]:port sends all
// non-local mail to a second moat instance, which delivers it to a local
// mailbox; a message over the second instance's SIZE limit bounces at
// the sender's side with Postfix's text, and a relayhost that is this
// very server is a mail loop.
func TestOutboundRelayhostToMoat(t *testing.T) {
	t.Parallel()
	b := startServer(t, "myhostname = b.moat.test\nmydestination = b.moat.test, dest.test\n"+
		"mynetworks = 127.0.0.0/8\nmessage_size_limit = 4000\n")
	a := startServer(t, "mynetworks = 127.0.0.0/8\n"+
		"dns_servers = 127.0.0.1:1\n"+
		fmt.Sprintf("relayhost = [127.0.0.1]:%d\n", b.port))
	id := sendVia(t, a, "user@moat.test", "user@dest.test", "relayed")
	relay := regexp.QuoteMeta(fmt.Sprintf("127.0.0.1[127.0.0.1]:%d", b.port))
	a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@dest\.test>, relay=`+relay+
		`, delay=[0-9.]+, delays=[0-9./]+, dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as [0-9A-Za-z]+\)`, 30*time.Second)
	b.waitDelivered("user", 1, 30*time.Second)

	big := strings.Repeat("0123456789 abcdefghijklmnopqrstuvwxyz\n", 150)
	id = sendVia(t, a, "user@moat.test", "user@dest.test", big)
	a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@dest\.test>, relay=`+relay+
		`, delay=[0-9.]+, delays=[0-9./]+, dsn=5\.3\.4, status=bounced \(message size \d+ exceeds size limit 4000 of server 127\.0\.0\.1\[127\.0\.0\.1\]\)`, 30*time.Second)

	loop := startServer(t, "mynetworks = 127.0.0.0/8\ndns_servers = 127.0.0.1:1\n")
	loopCF := fmt.Sprintf("relayhost = [127.0.0.1]:%d\n", loop.port)
	loop.stop()
	appendMainCF(t, loop, loopCF)
	loop.start()
	id = sendVia(t, loop, "user@moat.test", "user@dest.test", "loop")
	relay = regexp.QuoteMeta(fmt.Sprintf("127.0.0.1[127.0.0.1]:%d", loop.port))
	loop.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@dest\.test>, relay=`+relay+`, delay=[0-9.]+, delays=[0-9./]+, dsn=5\.4\.6, status=bounced \(mail for \[127\.0\.0\.1\]:\d+ loops back to myself\)`, 30*time.Second)
}

// TestOutboundDeferThenFlushAndBounce: a server answering RCPT with 4xx
// defers the mail (mailq shows why); once it accepts, postqueue -f
// delivers it exactly once. A 5xx bounces, and the bounce notice reaches
// the local sender's mailbox.
func TestOutboundDeferThenFlushAndBounce(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	port := smtpsink.FreePort(t, "127.0.0.33", "127.0.0.34")
	soft := smtpsink.Start(t, "127.0.0.33", port, "-r", "RCPT")
	smtpsink.Start(t, "127.0.0.34", port, "-f", "RCPT")
	ns := dnsserver.Start(t, "later.test. IN A 127.0.0.33", "never.test. IN A 127.0.0.34")
	s := startServer(t, "mynetworks = 127.0.0.0/8\n"+
		"dns_servers = "+ns.Addr()+"\n"+
		"smtp_tcp_port = "+port+"\n")
	id := sendVia(t, s, "user@moat.test", "someone@later.test", "retry me")
	relay := regexp.QuoteMeta(fmt.Sprintf("later.test[127.0.0.33]:%s", port))
	s.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<someone@later\.test>, relay=`+relay+`, delay=[0-9.]+, delays=[0-9./]+, dsn=4\.3\.0, `+
		`status=deferred \(host later\.test\[127\.0\.0\.33\] said: 450 4\.3\.0 Error: command failed \(in reply to RCPT TO command\)\)`, 30*time.Second)
	if q := postqueue(t, s, "-p"); !strings.Contains(q, id) || !strings.Contains(q, "450 4.3.0 Error: command failed") {
		t.Errorf("mailq:\n%s", q)
	}
	soft.Stop()
	good := smtpsink.Start(t, "127.0.0.33", port)
	sent := `postfix/smtp\[\d+\]: ` + id + `: to=<someone@later\.test>, relay=` + relay + `, .*status=sent \(250 2\.0\.0 Ok\)`
	flush(t, s, sent)
	s.waitLog(`postfix/qmgr\[\d+\]: `+id+`: removed`, 10*time.Second)
	if m := good.Messages(); len(m) != 1 || !strings.Contains(m[0], "\nretry me\n") {
		t.Errorf("sink got %q", m)
	}

	id = sendVia(t, s, "user@moat.test", "someone@never.test", "bounce me")
	s.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<someone@never\.test>, relay=never\.test\[127\.0\.0\.34\]:`+port+`, .*dsn=5\.3\.0, `+
		`status=bounced \(host never\.test\[127\.0\.0\.34\] said: 500 5\.3\.0 Error: command failed \(in reply to RCPT TO command\)\)`, 30*time.Second)
	s.waitDelivered("user", 1, 30*time.Second)
	files, _ := filepath.Glob(filepath.Join(s.maildir("user"), "new", "*"))
	if len(files) != 1 {
		t.Fatalf("bounce notices: %v", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil || !strings.Contains(string(b), "<someone@never.test>") || !strings.Contains(string(b), "500 5.3.0 Error: command failed") {
		t.Errorf("bounce notice (%v):\n%s", err, b)
	}
}

// TestOutboundRelayDomain: a relay_domains domain goes through the relay
// service, which is smtp(8) logging under its own name as Debian's
// master.cf row has it (written here as postfix/relay: moat does not
// expand $service_name in -o values yet).
func TestOutboundRelayDomain(t *testing.T) {
	t.Parallel()
	port := smtpsink.FreePort(t, "127.0.0.35")
	sink := smtpsink.Start(t, "127.0.0.35", port)
	ns := dnsserver.Start(t, "inside.test. IN MX 5 gw.inside.test.", "gw.inside.test. IN A 127.0.0.35")
	s := startWithMaster(t, "relay_domains = inside.test\n"+
		"dns_servers = "+ns.Addr()+"\n"+
		"smtp_tcp_port = "+port+"\n",
		"127.0.0.1:{{PORT}} inet n - n - - smtpd\n"+
			"relay unix - - n - - smtp\n  -o syslog_name=postfix/relay\n")
	id := sendVia(t, s, "sender@example.org", "someone@inside.test", "for the inside")
	s.waitLog(`postfix/relay/smtp\[\d+\]: `+id+`: to=<someone@inside\.test>, relay=gw\.inside\.test\[127\.0\.0\.35\]:`+port+
		`, delay=[0-9.]+, delays=[0-9./]+, dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok\)`, 30*time.Second)
	if len(sink.Messages()) != 1 {
		t.Errorf("sink got %d messages", len(sink.Messages()))
	}
}
