package qmgr

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"moat/internal/smtpd"
)

// Mail sent with Python's smtplib to a real smtpd listener reaches the
// recipients' Maildirs: smtpd's commit wakes the queue
// manager, which delivers the local recipients and defers the remote one.
func TestSmtplibToMaildir(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	e := newEnv(t, "recipient_delimiter = +\n")
	var wakes atomic.Int32
	srv, err := smtpd.New(smtpd.Deps{Config: e.cfg, Service: "smtp", Log: e.log.With("smtpd", 2),
		Queue: e.fix.Queue, Committed: func(string) { wakes.Add(1); e.m.Wake() }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		ln.Close()
		wg.Wait()
	}()
	serveAll(t, ln, &wg, func(c net.Conn) { srv.ServeConn(ctx, c) })
	e.start()
	time.Sleep(100 * time.Millisecond) // past the start-up scans

	host, port, _ := strings.Cut(ln.Addr().String(), ":")
	script := `
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
s.ehlo("py.example.org")
for i in range(3):
    refused = s.sendmail("a@example.org", ["nina+news@mx.test", "Omar@localhost", "far@remote.example"],
        b"Subject: py %d\r\n\r\nline\r\n.dot\r\n" % i)
    assert refused == {}, refused
s.quit()
`
	if out, err := exec.Command(py, "-c", script, host, port).CombinedOutput(); err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	// TestWakeLatency bounds the latency of a Wake; here the commit hook
	// must have called it once per message.
	e.waitFor("delivery", 10*time.Second, func() bool { return e.count("nina") == 3 && e.count("omar") == 3 })
	if n := wakes.Load(); n != 3 {
		t.Errorf("smtpd's commit hook woke the queue manager %d times, want 3", n)
	}
	e.waitFor("deferral", 5*time.Second, func() bool {
		ids, err := e.fix.Queue.List("deferred")
		return err == nil && len(ids) == 3
	})
	e.wantLog(`^postfix/local\[PID\]: \w+: to=<nina\+news@mx.test>, relay=local, .*status=sent \(delivered to maildir\)$`)
	e.wantLog(`^postfix/qmgr\[PID\]: \w+: from=<a@example.org>, size=\d+, nrcpt=3 \(queue active\)$`)
}
