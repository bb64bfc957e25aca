package smtp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
	"moat/internal/queue"
)

const smtpSink = "/usr/sbin/smtp-sink"

// sink is Postfix's smtp-sink(1) on a loopback address, dumping every
// message into its own directory and counting sessions.
type sink struct {
	t    testing.TB
	addr string // 127.0.0.x
	port string
	dir  string
	cmd  *exec.Cmd
	out  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort finds a TCP port free on every loopback address the tests
// use (the kernel's choice for 127.0.0.1, checked on the others).
func freePort(t testing.TB, addrs ...string) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		ok := true
		var held []net.Listener
		for _, a := range addrs {
			l, err := net.Listen("tcp", net.JoinHostPort(a, port))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		ln.Close()
		if ok {
			return port
		}
	}
	t.Fatal("no free port")
	return ""
}

// startSink runs smtp-sink on addr:port with opts (smtp-sink(1): -r/-f
// commands answered 4xx/5xx, -8 without 8BITMIME ...).
func startSink(t testing.TB, addr, port string, opts ...string) *sink {
	t.Helper()
	if _, err := os.Stat(smtpSink); err != nil {
		t.Skip("smtp-sink not installed")
	}
	dir := t.TempDir()
	for _, p := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	s := &sink{t: t, addr: addr, port: port, dir: dir, out: &syncBuffer{}}
	args := append([]string{"-u", "nobody", "-c", "-h", "sink.example", "-d", dir + "/%M."}, opts...)
	args = append(args, net.JoinHostPort(addr, port), "16")
	s.cmd = exec.Command(smtpSink, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("smtp-sink did not start: %v (%s)", err, s.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The probe connection above was one session.
	return s
}

func (s *sink) stop() {
	if s.cmd.Process != nil && s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// messages returns the dumped transactions that carried a message.
func (s *sink) messages() []string {
	s.t.Helper()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			s.t.Fatal(err)
		}
		if len(b) > 0 {
			// smtp-sink opens the file at MAIL FROM and removes it
			// when no DATA follows: an empty one is no message.
			out = append(out, string(b))
		}
	}
	return out
}

// sessions is the sink's count of ended sessions, from its -c counters
// ("sess=N quit=N mesg=N", each update ending in CR).
func (s *sink) sessions() string {
	out := s.out.String()
	i := strings.LastIndex(strings.TrimRight(out, "\r"), "\r")
	return strings.TrimSpace(out[i+1:])
}

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
