package smtp

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/smtp/smtpsink"
	"moat/internal/delivery/smtpclient/clienttest"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
	"moat/internal/testutil/dnsserver"
)

// newAgent builds an agent from Postfix's defaults with over laid on
// them, asking the DNS server dnsAddr and connecting to port.
func newAgent(t testing.TB, dnsAddr, port string, over map[string]string) (*Agent, *maillogtest.Sink) {
	t.Helper()
	o := map[string]string{"myhostname": "client.example", "queue_directory": t.TempDir(),
		"dns_servers": dnsAddr, "smtp_tcp_port": port, "inet_protocols": "ipv4",
		"smtp_connect_timeout": "5s", "smtp_helo_timeout": "10s",
		// This host is 127.0.0.1 only, for the MX self-check; the
		// servers of the tests are on other loopback addresses.
		"inet_interfaces": "127.0.0.1"}
	for k, v := range over {
		o[k] = v
	}
	ls := &maillogtest.Sink{}
	log := maillog.New(maillog.Options{Sink: ls, Fallback: ls, SyslogName: "postfix", Daemon: "smtp", PID: 1})
	t.Cleanup(func() { log.Close(context.Background()) })
	a, err := New(delivery.Deps{Config: config.Empty(t.TempDir()).WithOverrides(o), Service: "smtp", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, ls
}

var msg = []byte("From: sender@example.org\r\nSubject: test\r\n\r\nhello\r\n.dot line\r\n")

// request, deliver and checkResult are the agents' shared test helpers.
var (
	request     = clienttest.Request
	checkResult = clienttest.Check
)

func deliver(t testing.TB, a *Agent, req *delivery.Request) []delivery.Result {
	t.Helper()
	return clienttest.Deliver(t, a, req)
}

// logLines is the log so far, one text per record.
func logLines(ls *maillogtest.Sink) string {
	return strings.Join(ls.Lines(maillogtest.Text), "\n")
}

func relayOf(host, addr, port string) string { return fmt.Sprintf("%s[%s]:%s", host, addr, port) }

// logHas waits (at most 5 s) for the asynchronous log to contain want.
func logHas(logs func() string, want string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for range 100 {
		if strings.Contains(logs(), want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return strings.Contains(logs(), want)
}

// waitLog is logHas on a sink, with the log for the failure message.
func waitLog(ls *maillogtest.Sink, want string) (string, bool) {
	ok := logHas(func() string { return logLines(ls) }, want)
	return logLines(ls), ok
}

// oneSink starts Postfix's smtp-sink (with opts) on addr, a DNS server
// giving domain that one address, and an agent (with over) that sends
// there; it returns the agent, the sink and the port.
func oneSink(t *testing.T, domain, addr string, over map[string]string, opts ...string) (*Agent, *smtpsink.Sink, string) {
	t.Helper()
	port := smtpsink.FreePort(t, addr)
	s := smtpsink.Start(t, addr, port, opts...)
	ns := dnsserver.Start(t, domain+". IN A "+addr)
	a, _ := newAgent(t, ns.Addr(), port, over)
	return a, s, port
}
