package policy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/maillog"
)

// server is a policy server for the protocol tests: it accepts on a real
// loopback socket, parses each request and answers with what reply returns
// ("" closes the connection without answering, "HANG" sends nothing and
// waits for the client to give up, a reply ending in NUL is sent without
// the NUL and the connection closed).
type server struct {
	t     *testing.T
	ln    net.Listener
	reply func(conn, req int, attrs map[string]string) string

	mu       sync.Mutex
	conns    int
	requests []map[string]string
	raw      [][]byte
	closedBy []int // connection numbers the client closed (EOF seen)
	open     []net.Conn
	hungUp   []int // connection numbers the server closed after a reply
	wg       sync.WaitGroup
}

func startServer(t *testing.T, network string, reply func(conn, req int, attrs map[string]string) string) *server {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = t.TempDir() + "/policy"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, ln: ln, reply: reply}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *server) endpoint() string {
	if s.ln.Addr().Network() == "unix" {
		return "unix:" + s.ln.Addr().String()
	}
	return "inet:" + s.ln.Addr().String()
}

func (s *server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		n := s.conns
		s.open = append(s.open, nc)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(nc, n)
	}
}

func (s *server) serve(nc net.Conn, n int) {
	defer s.wg.Done()
	defer nc.Close()
	// Bounded: no test connection lives longer than this.
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	for req := 1; req <= 1000; req++ {
		var raw bytes.Buffer
		attrs := map[string]string{}
		for {
			line, err := br.ReadString('\n')
			raw.WriteString(line)
			if err != nil {
				if err == io.EOF && raw.Len() == 0 {
					s.mu.Lock()
					s.closedBy = append(s.closedBy, n)
					s.mu.Unlock()
				}
				return
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "" {
				break
			}
			k, v, _ := strings.Cut(line, "=")
			attrs[k] = v
		}
		s.mu.Lock()
		s.requests = append(s.requests, attrs)
		s.raw = append(s.raw, raw.Bytes())
		s.mu.Unlock()
		out := s.reply(n, req, attrs)
		switch out {
		case "":
			return
		case "HANG":
			io.Copy(io.Discard, br)
			return
		}
		closeAfter := strings.HasSuffix(out, "\x00")
		if _, err := io.WriteString(nc, strings.TrimSuffix(out, "\x00")); err != nil || closeAfter {
			s.mu.Lock()
			s.hungUp = append(s.hungUp, n)
			s.mu.Unlock()
			return
		}
	}
}

func (s *server) stats() (conns, requests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, len(s.requests)
}

// waitClosed waits (bounded) until the client closed connection n.
func (s *server) waitClosed(n int) bool {
	for range 200 {
		s.mu.Lock()
		for _, c := range s.closedBy {
			if c == n {
				s.mu.Unlock()
				return true
			}
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// waitHungUp waits (bounded) until the server closed connection n after
// replying, so the client's next query finds it closed.
func (s *server) waitHungUp(n int) {
	for range 200 {
		s.mu.Lock()
		for _, c := range s.hungUp {
			if c == n {
				s.mu.Unlock()
				time.Sleep(20 * time.Millisecond) // the FIN reaches the client
				return
			}
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
}

// fast is Settings for tests: short timers, Postfix's default action.
func fast(endpoint string) Settings {
	return Settings{
		Endpoint:      endpoint,
		Timeout:       2 * time.Second,
		MaxIdle:       10 * time.Second,
		MaxTTL:        30 * time.Second,
		TryLimit:      2,
		RetryDelay:    10 * time.Millisecond,
		DefaultAction: "451 4.3.5 Server configuration problem",
		MailVersion:   "0.1.0",
	}
}

// logSink collects log records in memory.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) Write(r *maillog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Text)
	return nil
}

func (l *logSink) Close() error  { return nil }
func (l *logSink) Reopen() error { return nil }

func (l *logSink) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// newLog returns a logger into an in-memory sink and a function that
// flushes it and returns everything logged.
func newLog(t *testing.T) (*maillog.Logger, func() string) {
	sink := &logSink{}
	log := maillog.New(maillog.Options{Sink: sink, Fallback: sink, SyslogName: "postfix", Daemon: "smtpd", PID: 1})
	t.Cleanup(func() { log.Close(t.Context()) })
	return log, func() string {
		log.Flush(t.Context())
		return sink.text()
	}
}

func action(s string) func(int, int, map[string]string) string {
	return func(int, int, map[string]string) string { return "action=" + s + "\n\n" }
}
