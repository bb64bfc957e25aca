package smtp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
	"moat/internal/queue"
)

// newAgent builds an agent from Postfix's defaults with over laid on
// them, asking the DNS server dnsAddr and connecting to port.
func newAgent(t testing.TB, dnsAddr, port string, over map[string]string) (*Agent, *maillogtest.Sink) {
	t.Helper()
	o := map[string]string{"myhostname": "client.example", "queue_directory": t.TempDir(),
		"dns_servers": dnsAddr, "smtp_tcp_port": port, "inet_protocols": "ipv4",
		"smtp_connect_timeout": "5s", "smtp_helo_timeout": "10s"}
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

// request is a delivery request over content held in memory.
func request(nexthop string, content []byte, rcpts ...string) *delivery.Request {
	req := &delivery.Request{
		QueueID: "4Xg7Hn1F2Bz9abc",
		Envelope: &queue.Envelope{
			Sender: "sender@example.org", Size: int64(len(content)), Arrival: time.Now(),
		},
		Content: func() io.Reader { return bytes.NewReader(content) },
		Nexthop: nexthop,
	}
	for i, r := range rcpts {
		req.Recipients = append(req.Recipients, delivery.Recipient{Index: i, Address: r})
		req.Envelope.Recipients = append(req.Envelope.Recipients, queue.Recipient{Address: r})
	}
	return req
}

// deliver runs one request with a bounded context and returns the
// results by recipient index, checking the contract: one each.
func deliver(t testing.TB, a *Agent, req *delivery.Request) []delivery.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := a.Deliver(ctx, req)
	if len(res) != len(req.Recipients) {
		t.Fatalf("%d results for %d recipients", len(res), len(req.Recipients))
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Index < res[j].Index })
	for i, r := range res {
		if r.Index != i || r.Done.IsZero() {
			t.Fatalf("results %+v", res)
		}
	}
	return res
}

func checkResult(t testing.TB, r delivery.Result, st queue.RcptState, dsn, reason, relay string) {
	t.Helper()
	if r.State != st || r.DSN != dsn || !matches(r.Reason, reason) || r.Relay != relay {
		t.Errorf("result %d:\n got  %v dsn=%s relay=%s (%s)\n want %v dsn=%s relay=%s (%s)",
			r.Index, r.State, r.DSN, r.Relay, r.Reason, st, dsn, relay, reason)
	}
}

// matches compares a reason, a trailing "*" matching any rest.
func matches(got, want string) bool {
	if p, ok := strings.CutSuffix(want, "*"); ok {
		return strings.HasPrefix(got, p)
	}
	return got == want
}

// logLines is the log so far, one text per record.
func logLines(ls *maillogtest.Sink) string {
	return strings.Join(ls.Lines(maillogtest.Text), "\n")
}

func relayOf(host, addr, port string) string { return fmt.Sprintf("%s[%s]:%s", host, addr, port) }
