package smtp

import (
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"moat/internal/delivery/smtp/smtpsink"
	"moat/internal/queue"
	"moat/internal/testutil/dnsserver"
)

// MX routing: the preferred MX host is down, the next one takes the
// mail; the skipped host is logged as Postfix logs it.
func TestMXNextHost(t *testing.T) {
	port := smtpsink.FreePort(t, "127.0.0.2", "127.0.0.3")
	s := smtpsink.Start(t, "127.0.0.3", port)
	ns := dnsserver.Start(t,
		"example.test. IN MX 10 mx1.example.test.",
		"example.test. IN MX 20 mx2.example.test.",
		"mx1.example.test. IN A 127.0.0.2",
		"mx2.example.test. IN A 127.0.0.3")
	a, ls := newAgent(t, ns.Addr(), port, nil)
	res := deliver(t, a, request("example.test", msg, "a@example.test", "b@example.test"))
	for _, r := range res {
		checkResult(t, r, queue.RcptDelivered, "2.0.0", "250 2.0.0 Ok", relayOf("mx2.example.test", "127.0.0.3", port))
	}
	m := s.Messages()
	if len(m) != 1 || !strings.Contains(m[0], "X-Rcpt-Args: <a@example.test> ORCPT=rfc822;a@example.test\nX-Rcpt-Args: <b@example.test> ORCPT=rfc822;b@example.test\n") ||
		!strings.Contains(m[0], "X-Helo-Args: client.example") || !strings.Contains(m[0], "\n.dot line\n") {
		t.Errorf("sink got %q", m)
	}
	if l, ok := waitLog(ls, "connect to mx1.example.test[127.0.0.2]:"+port+": Connection refused"); !ok {
		t.Errorf("log:\n%s", l)
	}
}

// No MX record: the domain's own address (RFC 5321 section 5.1); a
// bracketed next hop skips the MX lookup even where there is one.
func TestNoMXUsesAddress(t *testing.T) {
	port := smtpsink.FreePort(t, "127.0.0.4")
	s := smtpsink.Start(t, "127.0.0.4", port)
	ns := dnsserver.Start(t,
		"plain.test. IN A 127.0.0.4",
		"mxd.test. IN MX 10 nowhere.test.",
		"mxd.test. IN A 127.0.0.4")
	a, _ := newAgent(t, ns.Addr(), port, nil)
	checkResult(t, deliver(t, a, request("plain.test", msg, "a@plain.test"))[0],
		queue.RcptDelivered, "2.0.0", "250 *", relayOf("plain.test", "127.0.0.4", port))
	checkResult(t, deliver(t, a, request("[mxd.test]", msg, "a@mxd.test"))[0],
		queue.RcptDelivered, "2.0.0", "250 *", relayOf("mxd.test", "127.0.0.4", port))
	checkResult(t, deliver(t, a, request("[127.0.0.4]:"+port, msg, "a@x.test"))[0],
		queue.RcptDelivered, "2.0.0", "250 *", relayOf("127.0.0.4", "127.0.0.4", port))
	// smtp_bind_address chooses the source address.
	b, _ := newAgent(t, ns.Addr(), port, map[string]string{"smtp_bind_address": "127.0.0.13"})
	deliver(t, b, request("plain.test", msg, "a@plain.test"))
	m := s.Messages()
	bound := 0
	for _, x := range m {
		if strings.HasPrefix(x, "X-Client-Addr: 127.0.0.13\n") {
			bound++
		}
	}
	if len(m) != 4 || bound != 1 {
		t.Errorf("sink got %q", m)
	}
}

// DNS failures: null MX and a name that does not exist bounce, a server
// failure defers, with Postfix's texts and relay=none.
func TestLookupFailures(t *testing.T) {
	ns := dnsserver.Start(t,
		"nullmx.test. IN MX 0 .",
		"other.test. IN A 127.0.0.9")
	ns.Fail("broken.test.", mdns.RcodeServerFailure)
	a, _ := newAgent(t, ns.Addr(), "25", nil)
	checkResult(t, deliver(t, a, request("nullmx.test", msg, "a@nullmx.test"))[0],
		queue.RcptBounced, "5.1.0", "Domain nullmx.test does not accept mail (nullMX)", "none")
	checkResult(t, deliver(t, a, request("nosuch.test", msg, "a@nosuch.test"))[0],
		queue.RcptBounced, "5.4.4", "Host or domain name not found. Name service error for name=nosuch.test type=MX: Host not found", "none")
	checkResult(t, deliver(t, a, request("broken.test", msg, "a@broken.test"))[0],
		queue.RcptDeferred, "4.4.3", "Host or domain name not found. Name service error for name=broken.test type=MX: Host not found, try again", "none")
}

// Nothing listens: deferred with the connect error of the last address.
func TestConnectRefused(t *testing.T) {
	port := smtpsink.FreePort(t, "127.0.0.5")
	ns := dnsserver.Start(t, "down.test. IN A 127.0.0.5")
	a, _ := newAgent(t, ns.Addr(), port, nil)
	checkResult(t, deliver(t, a, request("down.test", msg, "a@down.test"))[0],
		queue.RcptDeferred, "4.4.1", "connect to down.test[127.0.0.5]:"+port+": Connection refused", "none")
}

// A sink that answers RCPT with 4xx defers; the same message later to a
// sink that accepts is delivered once.
func TestDeferredThenDelivered(t *testing.T) {
	port := smtpsink.FreePort(t, "127.0.0.6")
	ns := dnsserver.Start(t, "soft.test. IN A 127.0.0.6")
	a, _ := newAgent(t, ns.Addr(), port, map[string]string{"smtp_connection_cache_on_demand": "no"})
	s := smtpsink.Start(t, "127.0.0.6", port, "-r", "RCPT")
	relay := relayOf("soft.test", "127.0.0.6", port)
	checkResult(t, deliver(t, a, request("soft.test", msg, "a@soft.test"))[0], queue.RcptDeferred, "4.3.0",
		"host soft.test[127.0.0.6] said: 450 4.3.0 Error: command failed (in reply to RCPT TO command)", relay)
	if m := s.Messages(); len(m) != 0 {
		t.Errorf("sink got %q", m)
	}
	s.Stop()
	s2 := smtpsink.Start(t, "127.0.0.6", port)
	checkResult(t, deliver(t, a, request("soft.test", msg, "a@soft.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", relay)
	if n := len(s2.Messages()); n != 1 {
		t.Errorf("sink got %d messages", n)
	}
}

// 5xx bounces; per-recipient replies give per-recipient results.
func TestBounced(t *testing.T) {
	port := smtpsink.FreePort(t, "127.0.0.7")
	ns := dnsserver.Start(t, "hard.test. IN A 127.0.0.7")
	a, _ := newAgent(t, ns.Addr(), port, nil)
	smtpsink.Start(t, "127.0.0.7", port, "-f", "RCPT")
	checkResult(t, deliver(t, a, request("hard.test", msg, "a@hard.test"))[0], queue.RcptBounced, "5.3.0",
		"host hard.test[127.0.0.7] said: 500 5.3.0 Error: command failed (in reply to RCPT TO command)",
		relayOf("hard.test", "127.0.0.7", port))
}

// A soft failure at a server that is not the last one is not final: the
// recipient goes to the next MX host (smtp_trouble.c), here after a 4xx
// RCPT and after a 5xx greeting (smtp_skip_5xx_greeting).
func TestSoftFailureNextMX(t *testing.T) {
	for _, opt := range []string{"RCPT", "CONNECT"} {
		t.Run(opt, func(t *testing.T) {
			port := smtpsink.FreePort(t, "127.0.0.8", "127.0.0.9")
			flag := "-r"
			if opt == "CONNECT" {
				flag = "-f"
			}
			bad := smtpsink.Start(t, "127.0.0.8", port, flag, opt)
			good := smtpsink.Start(t, "127.0.0.9", port)
			ns := dnsserver.Start(t,
				"two.test. IN MX 10 mx1.two.test.",
				"two.test. IN MX 20 mx2.two.test.",
				"mx1.two.test. IN A 127.0.0.8",
				"mx2.two.test. IN A 127.0.0.9")
			a, ls := newAgent(t, ns.Addr(), port, nil)
			checkResult(t, deliver(t, a, request("two.test", msg, "a@two.test"))[0], queue.RcptDelivered, "2.0.0", "250 *",
				relayOf("mx2.two.test", "127.0.0.9", port))
			if len(bad.Messages()) != 0 || len(good.Messages()) != 1 {
				t.Errorf("messages: %d at mx1, %d at mx2", len(bad.Messages()), len(good.Messages()))
			}
			if l, ok := waitLog(ls, "4Xg7Hn1F2Bz9abc: host mx1.two.test[127.0.0.8] "); !ok {
				t.Errorf("log:\n%s", l)
			}
		})
	}
}

// Connection reuse: three messages to one destination share one
// session, which the sink counts when it ends.
func TestConnectionReuse(t *testing.T) {
	a, s, port := oneSink(t, "reuse.test", "127.0.0.10", map[string]string{"smtp_connection_cache_time_limit": "30s"})
	for range 3 {
		checkResult(t, deliver(t, a, request("reuse.test", msg, "a@reuse.test"))[0], queue.RcptDelivered, "2.0.0", "250 *",
			relayOf("reuse.test", "127.0.0.10", port))
	}
	a.Close()
	// The first session is startSink's probe.
	deadline := time.Now().Add(10 * time.Second)
	for s.Counters() != "sess=2 quit=1 mesg=3" {
		if time.Now().After(deadline) {
			t.Fatalf("sink counters %q, want two sessions (the probe and one delivery session)", s.Counters())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A server without 8BITMIME gets an 8-bit message as quoted-printable.
func TestDowngrade8BitMIME(t *testing.T) {
	a, s, port := oneSink(t, "seven.test", "127.0.0.11", nil, "-8")
	body := []byte("Subject: caf\xc3\xa9\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9 = ok\r\n")
	req := request("seven.test", body, "a@seven.test")
	req.Envelope.Flags |= queue.Flag8BitMIME
	checkResult(t, deliver(t, a, req)[0], queue.RcptDelivered, "2.0.0", "250 *", relayOf("seven.test", "127.0.0.11", port))
	m := s.Messages()
	if len(m) != 1 || !strings.Contains(m[0], "X-Mail-Args: <sender@example.org>\n") ||
		!strings.Contains(m[0], "Content-Transfer-Encoding: quoted-printable\n\ncaf=C3=A9 =3D ok\n") {
		t.Errorf("sink got %q", m)
	}
}

// With 8BITMIME the body goes as it is, declared BODY=8BITMIME.
func TestEightBitPassThrough(t *testing.T) {
	a, s, _ := oneSink(t, "eight.test", "127.0.0.12", nil)
	body := []byte("Subject: x\r\n\r\ncaf\xc3\xa9\r\n")
	req := request("eight.test", body, "a@eight.test")
	req.Envelope.Flags |= queue.Flag8BitMIME
	deliver(t, a, req)
	m := s.Messages()
	if len(m) != 1 || !strings.Contains(m[0], "X-Mail-Args: <sender@example.org> BODY=8BITMIME\n") || !strings.Contains(m[0], "\ncaf\xc3\xa9\n") {
		t.Errorf("sink got %q", m)
	}
}
