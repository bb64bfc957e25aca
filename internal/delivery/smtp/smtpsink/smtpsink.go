// Package smtpsink runs Postfix's smtp-sink(1) for tests of the SMTP
// client: a real SMTP server that answers 4xx or 5xx to the commands a
// test names, leaves out extensions (8BITMIME, PIPELINING, ESMTP), dumps
// each message it takes to a file and counts sessions, on a loopback
// address the test chooses (127.0.0.x) so that several MX hosts can share
// one port.
package smtpsink

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Path is where Debian's postfix package installs smtp-sink.
const Path = "/usr/sbin/smtp-sink"

// Sink is one smtp-sink process.
type Sink struct {
	t          testing.TB
	Addr, Port string
	dir        string
	cmd        *exec.Cmd
	out        *syncBuffer

	stopOnce sync.Once
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

// FreePort finds a TCP port that is free on 127.0.0.1 and on every
// address given, so that sinks on those addresses can share it.
func FreePort(t testing.TB, addrs ...string) string {
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

// Start runs smtp-sink on addr:port with opts (smtp-sink(1): "-r RCPT"
// answers RCPT with 4xx, "-f RCPT" with 5xx, "-8" drops 8BITMIME, ...)
// and waits until it accepts connections. The test's cleanup stops it.
// smtp-sink needs an unprivileged user when started as root: nobody.
func Start(t testing.TB, addr, port string, opts ...string) *Sink {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		t.Skip("smtp-sink is not installed")
	}
	dir := t.TempDir()
	for _, p := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	s := &Sink{t: t, Addr: addr, Port: port, dir: dir, out: &syncBuffer{}}
	args := append([]string{"-u", "nobody", "-c", "-h", "sink.example", "-d", dir + "/%M."}, opts...)
	args = append(args, net.JoinHostPort(addr, port), "16")
	s.cmd = exec.Command(Path, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, port), time.Second)
		if err == nil {
			// This probe is the sink's first session.
			c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("smtp-sink did not start: %v (%s)", err, s.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// Stop ends the sink (the process this package started, by its PID).
func (s *Sink) Stop() {
	s.stopOnce.Do(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
}

// Messages returns the dumped transactions that carried a message, each
// as smtp-sink writes it: its X-Client-Addr, X-Helo-Args, X-Mail-Args and
// X-Rcpt-Args lines, a Received: header, then the message with LF line
// ends.
func (s *Sink) Messages() []string {
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

// Counters is the sink's last "sess=N quit=N mesg=N" line (-c): ended
// sessions, QUIT commands and messages.
func (s *Sink) Counters() string {
	out := s.out.String()
	i := strings.LastIndex(strings.TrimRight(out, "\r"), "\r")
	return strings.TrimSpace(out[i+1:])
}
