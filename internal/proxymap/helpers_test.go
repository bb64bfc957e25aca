package proxymap

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/config/configtest"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
	"moat/internal/maps"
)

// logSink keeps the server's log records for the test to read, each as
// "severity: text" (informational ones too).
type logSink struct{ maillogtest.Sink }

func (s *logSink) lines() []string {
	return s.Lines(func(r maillog.Record) string { return r.Severity.String() + ": " + r.Text })
}

// has reports whether a record with exactly this text ("warning: ...")
// was logged, waiting briefly for the logger's writer goroutine.
func (s *logSink) has(line string) bool {
	for range 100 {
		if slices.Contains(s.lines(), line) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func (s *logSink) String() string { return strings.Join(s.lines(), "\n") }

// fixture is a running proxymap server on a socket in a temporary
// directory.
type fixture struct {
	t      *testing.T
	dir    string
	socket string
	srv    *server
	log    *logSink
	stop   func()
}

// startServer runs a server for mainCF on dir/private/proxymap until the
// test ends.
func startServer(t *testing.T, dir, mainCF string) *fixture {
	t.Helper()
	cfg := configtest.Load(t, mainCF)
	sink := &logSink{}
	log := maillog.New(maillog.Options{Sink: sink, Fallback: sink, SyslogName: "postfix", Daemon: "proxymap", PID: 1})
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	srv, err := newServer(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	srv.recheck = 0
	if err := os.MkdirAll(filepath.Join(dir, "private"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, socket: filepath.Join(dir, "private", "proxymap"), srv: srv, log: sink}
	f.listen()
	return f
}

// listen (re)starts serving on the fixture's socket.
func (f *fixture) listen() {
	f.t.Helper()
	_ = os.Remove(f.socket)
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chmod(f.socket, 0o666); err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.serve(ctx, ln) }()
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					f.t.Errorf("serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				f.t.Error("serve did not return after cancel")
			}
		})
	}
	f.t.Cleanup(f.stop)
}

// client opens spec through the fixture's server.
func (f *fixture) client(spec string) maps.Table {
	f.t.Helper()
	opts := maps.DefaultOptions()
	opts.ProxySocket = f.socket
	tb, err := maps.Open(spec, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { tb.Close() })
	return tb
}

// writeTable writes a table file owned by the test user, mode 0644.
func writeTable(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
