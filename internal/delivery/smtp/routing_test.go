package smtp

import (
	"net"
	"testing"

	"moat/internal/delivery/smtp/smtpsink"
	"moat/internal/queue"
	"moat/internal/testutil/dnsserver"
)

// MX hosts of equal preference share the mail in random order (RFC 5321
// section 5.1): with the cache off, twenty messages reach both.
func TestEqualPreferenceShuffled(t *testing.T) {
	port := smtpsink.FreePort(t, "127.0.0.17", "127.0.0.18")
	s1 := smtpsink.Start(t, "127.0.0.17", port)
	s2 := smtpsink.Start(t, "127.0.0.18", port)
	ns := dnsserver.Start(t,
		"eq.test. IN MX 10 a.eq.test.",
		"eq.test. IN MX 10 b.eq.test.",
		"a.eq.test. IN A 127.0.0.17",
		"b.eq.test. IN A 127.0.0.18")
	a, _ := newAgent(t, ns.Addr(), port, map[string]string{"smtp_connection_cache_on_demand": "no"})
	for range 20 {
		if r := deliver(t, a, request("eq.test", msg, "a@eq.test"))[0]; r.State != queue.RcptDelivered {
			t.Fatalf("result %+v", r)
		}
	}
	if n1, n2 := len(s1.Messages()), len(s2.Messages()); n1 == 0 || n2 == 0 || n1+n2 != 20 {
		t.Errorf("messages: %d and %d", n1, n2)
	}
}

// inet_protocols decides which address families are looked up and
// used: an MX host with only an IPv6 address is unusable under ipv4 and
// taken under all.
func TestInetProtocols(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback")
	} else {
		ln.Close()
	}
	port := smtpsink.FreePort(t, "::1")
	s := smtpsink.Start(t, "::1", port)
	ns := dnsserver.Start(t, "six.test. IN MX 10 mx.six.test.", "mx.six.test. IN AAAA ::1")
	a4, _ := newAgent(t, ns.Addr(), port, map[string]string{"inet_protocols": "ipv4"})
	checkResult(t, deliver(t, a4, request("six.test", msg, "a@six.test"))[0], queue.RcptBounced, "5.4.4",
		"Host or domain name not found. Name service error for name=mx.six.test type=A: Host found but no data record of requested type", "none")
	a6, _ := newAgent(t, ns.Addr(), port, map[string]string{"inet_protocols": "all"})
	checkResult(t, deliver(t, a6, request("six.test", msg, "a@six.test"))[0], queue.RcptDelivered, "2.0.0", "250 *",
		relayOf("mx.six.test", "::1", port))
	if len(s.Messages()) != 1 {
		t.Errorf("sink got %d messages", len(s.Messages()))
	}
}

// A server slower than smtp_rcpt_timeout: the conversation times out
// with smtp_stream_except's text.
func TestRcptTimeout(t *testing.T) {
	port := smtpsink.FreePort(t, "127.0.0.19")
	// Without PIPELINING: smtp-sink answers pipelined commands after a
	// delayed one out of order.
	smtpsink.Start(t, "127.0.0.19", port, "-p", "-W", "RCPT:3")
	ns := dnsserver.Start(t, "slow.test. IN A 127.0.0.19")
	a, _ := newAgent(t, ns.Addr(), port, map[string]string{"smtp_rcpt_timeout": "1s"})
	checkResult(t, deliver(t, a, request("slow.test", msg, "a@slow.test"))[0], queue.RcptDeferred, "4.4.2",
		"conversation with slow.test[127.0.0.19] timed out while sending RCPT TO", relayOf("slow.test", "127.0.0.19", port))
}

// This host in an MX list (inet_interfaces): the MX hosts no better than
// it are dropped (a backup MX passes mail to better ones only), and mail
// for which it is the best MX loops (smtp_addr.c).
func TestMXSelf(t *testing.T) {
	port := smtpsink.FreePort(t, "127.0.0.20")
	s := smtpsink.Start(t, "127.0.0.20", port)
	ns := dnsserver.Start(t,
		"backup.test. IN MX 10 primary.backup.test.",
		"backup.test. IN MX 20 self.test.",
		"backup.test. IN MX 30 worse.backup.test.",
		"primary.backup.test. IN A 127.0.0.20",
		"worse.backup.test. IN A 127.0.0.21",
		"self.test. IN A 127.0.0.1",
		"best.test. IN MX 10 self.test.",
		"best.test. IN MX 20 primary.backup.test.",
		"lost.test. IN MX 10 nowhere.lost.test.",
		"lost.test. IN MX 20 self.test.")
	a, _ := newAgent(t, ns.Addr(), port, nil)
	checkResult(t, deliver(t, a, request("backup.test", msg, "a@backup.test"))[0], queue.RcptDelivered, "2.0.0", "250 *",
		relayOf("primary.backup.test", "127.0.0.20", port))
	checkResult(t, deliver(t, a, request("best.test", msg, "a@best.test"))[0], queue.RcptBounced, "5.4.6",
		"mail for best.test loops back to myself", "none")
	checkResult(t, deliver(t, a, request("lost.test", msg, "a@lost.test"))[0], queue.RcptDeferred, "4.4.4",
		"unable to find primary relay for lost.test", "none")
	if len(s.Messages()) != 1 {
		t.Errorf("sink got %d messages", len(s.Messages()))
	}
}

// A next hop where no server answers is reported as a site failure, for
// the queue manager's dead-destination throttling (qmgr(8)); the agent
// itself suspends nothing, so the next request tries again, and a
// delivered recipient or a recipient's own refusal is no site failure.
func TestSiteFailureReported(t *testing.T) {
	port := smtpsink.FreePort(t, "127.0.0.22", "127.0.0.23", "127.0.0.24", "127.0.0.25", "127.0.0.26")
	smtpsink.Start(t, "127.0.0.23", port)
	ns := dnsserver.Start(t, "dead.test. IN A 127.0.0.22", "live.test. IN A 127.0.0.23")
	a, _ := newAgent(t, ns.Addr(), port, nil)
	refused := "connect to dead.test[127.0.0.22]:" + port + ": Connection refused"
	for range 2 {
		r := deliver(t, a, request("dead.test", msg, "a@dead.test"))[0]
		checkResult(t, r, queue.RcptDeferred, "4.4.1", refused, "none")
		if !r.SiteFailure {
			t.Errorf("no site failure: %+v", r)
		}
	}
	r := deliver(t, a, request("live.test", msg, "a@live.test"))[0]
	checkResult(t, r, queue.RcptDelivered, "2.0.0", "250 *", relayOf("live.test", "127.0.0.23", port))
	if r.SiteFailure {
		t.Errorf("site failure on a delivery: %+v", r)
	}
	// A recipient's own 4xx is no site failure; a 421 greeting or a
	// connection dropped mid-session is (smtpclient's failSession).
	ns.Add("busy.test. IN A 127.0.0.24", "greet.test. IN A 127.0.0.25", "drop.test. IN A 127.0.0.26")
	for _, c := range []struct {
		domain, addr string
		opts         []string
		site         bool
	}{
		{"busy.test", "127.0.0.24", []string{"-r", "RCPT"}, false},
		{"greet.test", "127.0.0.25", []string{"-Q", "CONNECT"}, true},
		{"drop.test", "127.0.0.26", []string{"-q", "MAIL"}, true},
	} {
		smtpsink.Start(t, c.addr, port, c.opts...)
		r := deliver(t, a, request(c.domain, msg, "a@"+c.domain))[0]
		if r.State != queue.RcptDeferred || r.SiteFailure != c.site {
			t.Errorf("%s (%v): SiteFailure %v, want %v: %+v", c.domain, c.opts, r.SiteFailure, c.site, r)
		}
	}
	smtpsink.Start(t, "127.0.0.22", port)
	checkResult(t, deliver(t, a, request("dead.test", msg, "a@dead.test"))[0], queue.RcptDelivered, "2.0.0", "250 *",
		relayOf("dead.test", "127.0.0.22", port))
}
