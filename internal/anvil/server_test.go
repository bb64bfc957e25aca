package anvil

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
)

// logSink keeps records for the test to read.
type logSink struct{ maillogtest.Sink }

func (s *logSink) text() string {
	return strings.Join(s.Lines(func(r maillog.Record) string { return r.Text }), "\n")
}

// service runs an anvil server on a socket in a temporary directory.
type service struct {
	path   string
	sink   *logSink
	log    *maillog.Logger
	cancel context.CancelFunc
	done   chan error
}

func startService(t testing.TB, dir string, tb *Table, status time.Duration) *service {
	t.Helper()
	path := filepath.Join(dir, "anvil")
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	sv := &service{path: path, sink: &logSink{}, done: make(chan error, 1)}
	sv.log = maillog.New(maillog.Options{Sink: sv.sink, SyslogName: "postfix", Daemon: "anvil", PID: 1})
	ctx, cancel := context.WithCancel(context.Background())
	sv.cancel = cancel
	go func() { sv.done <- ServeTable(ctx, ln, tb, status, sv.log) }()
	t.Cleanup(sv.stop)
	return sv
}

func (sv *service) stop() {
	if sv.cancel == nil {
		return
	}
	sv.cancel()
	<-sv.done
	sv.cancel = nil
	ctx, c := context.WithTimeout(context.Background(), 5*time.Second)
	defer c()
	_ = sv.log.Flush(ctx)
}

func TestClientServer(t *testing.T) {
	dir := t.TempDir()
	sv := startService(t, dir, NewTable(Options{}), time.Hour)
	c, err := Dial(sv.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var l Limiter = c
	for i := 1; i <= 3; i++ {
		n, r, err := l.Connect("smtp", "192.0.2.1")
		if err != nil || n != i || r != i {
			t.Fatalf("connect %d: %d %d %v", i, n, r, err)
		}
	}
	if err := l.Disconnect("smtp", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(string, string) (int, error){
		"mail": l.Mail, "rcpt": l.Rcpt, "newtls": l.NewTLS, "auth": l.Auth} {
		if name == "newtls" {
			if r, err := l.NewTLSStatus("smtp", "192.0.2.1"); err != nil || r != 0 {
				t.Fatalf("newtls status: %d %v", r, err)
			}
		}
		if r, err := f("smtp", "192.0.2.1"); err != nil || r != 1 {
			t.Fatalf("%s: %d %v", name, r, err)
		}
	}
	if n, r, err := l.Connect("smtp", "192.0.2.1"); err != nil || n != 3 || r != 4 {
		t.Fatalf("connect after disconnect: %d %d %v", n, r, err)
	}
	// A request the protocol cannot carry fails at the client.
	if _, err := l.Mail("smtp", "a b"); err == nil {
		t.Fatal("blank in address accepted")
	}
}

// TestManySessions: one client shared by many goroutines, as the sessions
// of one smtpd process share it, counts every event exactly once.
func TestManySessions(t *testing.T) {
	sv := startService(t, t.TempDir(), NewTable(Options{}), time.Hour)
	c := NewClient(sv.path)
	defer c.Close()
	const g, per = 50, 40
	var wg sync.WaitGroup
	errs := make(chan error, g)
	for i := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				if _, err := c.Rcpt("smtp", fmt.Sprint("198.51.100.", i%5)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range 5 {
		if r, _ := c.Rcpt("smtp", fmt.Sprint("198.51.100.", i)); r != g/5*per+1 {
			t.Fatalf("address %d: rate %d, want %d", i, r, g/5*per+1)
		}
	}
}

// TestRestartAndFailOpen: while anvil is down, requests fail fast (smtpd
// goes on without limits); when it is back, the same client reconnects.
func TestRestartAndFailOpen(t *testing.T) {
	dir := t.TempDir()
	sv := startService(t, dir, NewTable(Options{}), time.Hour)
	c, err := Dial(sv.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.Connect("smtp", "a"); err != nil {
		t.Fatal(err)
	}
	sv.stop()
	start := time.Now()
	for range 20 {
		if _, _, err := c.Connect("smtp", "a"); err == nil {
			t.Fatal("request succeeded with anvil stopped")
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("20 requests to a stopped anvil took %v", d)
	}
	// The restarted service has a fresh table.
	startService(t, dir, NewTable(Options{}), time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, r, err := c.Connect("smtp", "a")
		if err == nil {
			if n != 1 || r != 1 {
				t.Fatalf("after restart: %d %d", n, r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client did not reconnect: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := Dial(filepath.Join(dir, "nothing")); err == nil {
		t.Fatal("Dial of a missing socket succeeded")
	}
}

// TestServerRefusesGarbage: a line that is not a request gets ERR and the
// connection is closed; the service keeps serving others.
func TestServerRefusesGarbage(t *testing.T) {
	sv := startService(t, t.TempDir(), NewTable(Options{}), time.Hour)
	conn, err := net.Dial("unix", sv.path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.0\nCONNECT smtp a\n")
	buf := make([]byte, 100)
	n, _ := conn.Read(buf)
	if got := string(buf[:n]); got != "ERR bad request\n" {
		t.Fatalf("reply %q", got)
	}
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("connection still open: %q", buf[:n])
	}
	fmt.Fprintf(conn, "x\n")
	c := NewClient(sv.path)
	defer c.Close()
	if _, _, err := c.Connect("smtp", "a"); err != nil {
		t.Fatal(err)
	}
	// Over-long lines end the connection too.
	conn2, err := net.Dial("unix", sv.path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	conn2.SetDeadline(time.Now().Add(5 * time.Second))
	conn2.Write([]byte(strings.Repeat("A", 2*MaxLine)))
	if _, err := conn2.Read(buf); err == nil {
		t.Fatal("over-long line answered")
	}
	sv.stop()
	if !strings.Contains(sv.sink.text(), "unrecognized request") {
		t.Fatalf("log:\n%s", sv.sink.text())
	}
}

// TestStatisticsLogged: the service logs anvil(8)'s statistics every
// status period and once more when it stops.
func TestStatisticsLogged(t *testing.T) {
	sv := startService(t, t.TempDir(), NewTable(Options{}), 200*time.Millisecond)
	c := NewClient(sv.path)
	defer c.Close()
	c.Connect("smtp", "192.0.2.7")
	c.Connect("smtp", "192.0.2.7")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(sv.sink.text(), "statistics: max connection count 2 for (smtp:192.0.2.7) at ") {
		if time.Now().After(deadline) {
			t.Fatalf("no statistics within 5s:\n%s", sv.sink.text())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Rcpt("smtp", "192.0.2.8")
	sv.stop()
	txt := sv.sink.text()
	for _, want := range []string{"statistics: max connection rate 2/60s for (smtp:192.0.2.7)",
		"statistics: max recipient rate 1/60s for (smtp:192.0.2.8)", "statistics: max cache size 2 at "} {
		if !strings.Contains(txt, want) {
			t.Errorf("missing %q in\n%s", want, txt)
		}
	}
	for _, l := range strings.Split(txt, "\n") {
		if !statRE.MatchString(l) {
			t.Errorf("line %q", l)
		}
	}
}

// TestServeConfig: Serve reads its two parameters.
func TestServeConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("anvil_rate_time_unit = 2s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "anvil"))
	if err != nil {
		t.Fatal(err)
	}
	log := maillog.New(maillog.Options{Sink: &logSink{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, cfg, log) }()
	c := NewClient(filepath.Join(dir, "anvil"))
	defer c.Close()
	c.Mail("smtp", "a")
	if r, err := c.Mail("smtp", "a"); err != nil || r != 2 {
		t.Fatalf("%d %v", r, err)
	}
	time.Sleep(2100 * time.Millisecond)
	if r, err := c.Mail("smtp", "a"); err != nil || r != 1 {
		t.Fatalf("after 2s unit: %d %v", r, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestLocal: the in-process service logs statistics too.
func TestLocal(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("anvil_status_update_time = 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sink := &logSink{}
	log := maillog.New(maillog.Options{Sink: sink})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tb, err := Local(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	var l Limiter = tb
	l.Connect("smtp", "192.0.2.1")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_ = log.Flush(ctx)
		if strings.Contains(sink.text(), "statistics: max connection count 1 for (smtp:192.0.2.1)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no statistics:\n%s", sink.text())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStreamEndUncounts: when an smtpd process's stream ends (it exited or
// crashed), the connections it counted are uncounted; a DISCONNECT for a
// connection another stream counted is ignored.
func TestStreamEndUncounts(t *testing.T) {
	tb := NewTable(Options{})
	sv := startService(t, t.TempDir(), tb, time.Hour)
	dead := NewClient(sv.path)
	for range 3 {
		if _, _, err := dead.Connect("smtp", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
	}
	live := NewClient(sv.path)
	defer live.Close()
	if n, _, _ := live.Connect("smtp", "192.0.2.1"); n != 4 {
		t.Fatalf("count %d", n)
	}
	// A stray DISCONNECT from the live stream for more than it counted.
	for range 3 {
		live.Disconnect("smtp", "192.0.2.1")
	}
	if n, _, _ := live.Connect("smtp", "192.0.2.1"); n != 4 {
		t.Fatalf("after stray disconnects: count %d, want 4", n)
	}
	dead.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, _, _ := live.Connect("smtp", "192.0.2.1")
		live.Disconnect("smtp", "192.0.2.1")
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("count %d after the first stream ended, want 2", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
