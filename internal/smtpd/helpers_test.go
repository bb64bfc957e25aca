package smtpd

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
	"moat/internal/queue"
	"moat/internal/smtp"
)

// logSink keeps log records in memory; tests compare the texts Postfix
// would log (maillogtest.Text: the severity word, no time stamp or host).
type logSink = maillogtest.Sink

// harness is a listening smtpd service on 127.0.0.1 with its queue in a
// temporary directory.
type harness struct {
	t      *testing.T
	dir    string
	srv    *Server
	q      *queue.Queue
	log    *maillog.Logger
	sink   *logSink
	addr   string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// client is how the logs name the test client.
	client string

	mu        sync.Mutex
	committed []string
}

// newHarness starts a service whose main.cf holds params (on top of
// myhostname = mx.example.com) and, if queueDir is not "", a queue there.
// tweak adjusts settings no main.cf parameter reaches yet.
func newHarness(t *testing.T, params map[string]string, policy Policy, queueDir string, tweak ...func(*Server)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), sink: &logSink{}}
	var b strings.Builder
	b.WriteString("myhostname = mx.example.com\n")
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k + " = " + params[k] + "\n")
	}
	if err := os.WriteFile(filepath.Join(h.dir, "main.cf"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(h.dir)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if queueDir == "" {
		queueDir = filepath.Join(h.dir, "queue")
	}
	if h.q, err = queue.Open(queueDir, queue.Options{Create: true}); err != nil {
		t.Fatalf("queue: %v", err)
	}
	h.log = maillog.New(maillog.Options{Sink: h.sink, SyslogName: "postfix", Daemon: "smtpd", PID: 1})
	h.srv, err = New(Deps{Config: cfg, Service: "smtp", Log: h.log, Queue: h.q, Policy: policy,
		Committed: func(id string) { h.mu.Lock(); h.committed = append(h.committed, id); h.mu.Unlock() }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range tweak {
		f(h.srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	name := lookupClientName(context.Background(), netip.MustParseAddr("127.0.0.1"))
	if name == "" {
		name = "unknown"
	}
	h.client = name + "[127.0.0.1]"
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.wg.Add(1)
			go func() { defer h.wg.Done(); h.srv.ServeConn(ctx, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		h.wg.Wait()
		h.srv.Close()
		ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		h.log.Close(ctx)
	})
	return h
}

// logs returns the records written so far.
func (h *harness) logs() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = h.log.Flush(ctx)
	return h.sink.Lines(maillogtest.Text)
}

// waitLog waits (bounded) until a record containing s appears.
func (h *harness) waitLog(s string) []string {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := h.logs()
		for _, line := range l {
			if strings.Contains(line, s) {
				return l
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no log record contains %q; have:\n%s", s, strings.Join(l, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// messages lists the queue's incoming IDs.
func (h *harness) messages(name string) []string {
	h.t.Helper()
	ids, err := h.q.List(name)
	if err != nil {
		h.t.Fatal(err)
	}
	return ids
}

// client is a raw SMTP dialogue over a real socket.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (h *harness) dial() *client {
	h.t.Helper()
	c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	h.t.Cleanup(func() { c.Close() })
	return &client{t: h.t, conn: c, r: bufio.NewReader(c)}
}

// greeted dials and reads the greeting.
func (h *harness) greeted() *client {
	c := h.dial()
	c.expect("220 mx.example.com ESMTP")
	return c
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one reply and returns it formatted without the final CRLF.
func (c *client) reply() string {
	c.t.Helper()
	r, err := smtp.ReadReply(c.r, 0)
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return strings.TrimSuffix(r.Format(), "\r\n")
}

// expect reads one reply and checks that it starts with want.
func (c *client) expect(want string) string {
	c.t.Helper()
	got := c.reply()
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("reply %q, want prefix %q", got, want)
	}
	return got
}

// cmd sends a command line and checks the reply's prefix.
func (c *client) cmd(line, want string) string {
	c.t.Helper()
	c.write(line + "\r\n")
	return c.expect(want)
}

// closed checks that the server closed the connection.
func (c *client) closed() {
	c.t.Helper()
	b, err := c.r.ReadByte()
	if err == nil {
		rest, _ := c.r.Peek(c.r.Buffered())
		c.t.Fatalf("connection still open; got %q", string(b)+string(rest))
	}
}
