package smtpd

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"moat/internal/dns"
	"moat/internal/testutil/dnsserver"
)

// TestClientNameView: the client name lookup goes to the resolver that
// dns_servers names (a real DNS server on loopback), and a policy sees the
// verified name, the PTR name and Postfix's peer codes; the session's DNS
// cache reaches the policy too.
func TestClientNameView(t *testing.T) {
	srv := dnsserver.Start(t,
		"10.0.0.127.in-addr.arpa. IN PTR good.test.",
		"good.test. IN A 127.0.0.10",
		"11.0.0.127.in-addr.arpa. IN PTR forged.test.",
		"forged.test. IN A 192.0.2.1",
		"13.0.0.127.in-addr.arpa. IN PTR slow.test.",
		"listed.test. IN A 127.0.0.2",
	)
	srv.Fail("12.0.0.127.in-addr.arpa", mdns.RcodeServerFailure)
	srv.Fail("slow.test", mdns.RcodeServerFailure)

	var mu sync.Mutex
	views := map[string]View{}
	gate := PolicyFunc(func(ctx context.Context, st Stage, v *View) (*Decision, error) {
		{
			if v.DNS != nil && v.DNS.Lookup(ctx, "listed.test", dns.A).Status != dns.OK {
				t.Errorf("%s: the session's resolver does not reach the server", v.ClientAddr)
			}
			mu.Lock()
			views[v.ClientAddr.String()] = *v
			mu.Unlock()
		}
		return nil, nil
	})
	cases := []struct {
		local                 string
		name, reverse         string
		status, reverseStatus int
		logName               string
	}{
		{"127.0.0.10", "good.test", "good.test", 2, 2, "good.test[127.0.0.10]"},
		{"127.0.0.11", "unknown", "forged.test", 6, 2, "unknown[127.0.0.11]"},
		{"127.0.0.12", "unknown", "unknown", 4, 4, "unknown[127.0.0.12]"},
		{"127.0.0.13", "unknown", "slow.test", 4, 2, "unknown[127.0.0.13]"},
		{"127.0.0.14", "unknown", "unknown", 5, 5, "unknown[127.0.0.14]"},
	}
	h := newHarness(t, map[string]string{"dns_servers": srv.Addr()}, gate, "")
	for _, c := range cases {
		cl := dialFrom(t, h.addr, c.local)
		cl.expect("220 ")
		cl.cmd("HELO x", "250")
		cl.cmd("MAIL FROM:<a@example.com>", "250")
		cl.cmd("RCPT TO:<b@example.com>", "250")
		cl.cmd("QUIT", "221")
		mu.Lock()
		v, ok := views[c.local]
		mu.Unlock()
		if !ok {
			t.Errorf("%s: the policy was not asked", c.local)
			continue
		}
		if v.ClientName != c.name || v.ReverseClientName != c.reverse || v.ClientNameStatus != c.status || v.ReverseNameStatus != c.reverseStatus {
			t.Errorf("%s: view name %q reverse %q codes %d/%d, want %q %q %d/%d", c.local,
				v.ClientName, v.ReverseClientName, v.ClientNameStatus, v.ReverseNameStatus,
				c.name, c.reverse, c.status, c.reverseStatus)
		}
		h.waitLog("connect from " + c.logName)
	}

	// smtpd_peername_lookup = no: no question is asked, both names are
	// unknown with the permanent code.
	before := srv.Queries()
	h2 := newHarness(t, map[string]string{"dns_servers": srv.Addr(), "smtpd_peername_lookup": "no"}, gate, "")
	cl := dialFrom(t, h2.addr, "127.0.0.10")
	cl.expect("220 ")
	mu.Lock()
	delete(views, "127.0.0.10")
	mu.Unlock()
	cl.cmd("HELO x", "250")
	cl.cmd("MAIL FROM:<a@example.com>", "250")
	cl.cmd("RCPT TO:<b@example.com>", "250")
	mu.Lock()
	v := views["127.0.0.10"]
	mu.Unlock()
	if v.ClientName != "unknown" || v.ReverseClientName != "unknown" || v.ClientNameStatus != 5 || v.ReverseNameStatus != 5 {
		t.Errorf("no lookup: %+v", v)
	}
	// Only the policy's own question reached the server (once: cached).
	if n := srv.Queries() - before; n != 1 {
		t.Errorf("smtpd_peername_lookup = no: %d questions, want the policy's 1", n)
	}
}

// dialFrom connects from a chosen loopback address (all of 127/8 is local
// on Linux), so one test can be several clients with different PTRs.
func dialFrom(t *testing.T, addr, local string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	if !strings.HasPrefix(c.LocalAddr().String(), local+":") {
		t.Fatalf("dialled from %s, want %s", c.LocalAddr(), local)
	}
	return &client{t: t, conn: c, r: bufio.NewReader(c)}
}
