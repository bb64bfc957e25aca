// Package test holds moat's end-to-end tests: the real binary, started as
// an admin starts it (`postfix start-fg`), driven over real sockets by the
// real clients admins use — swaks, Python's smtplib and Postfix's own
// smtp-source — and checked through what an admin sees: replies, the mail
// log, the queue and the delivered Maildir files.
package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"moat/internal/delivery/maildir"
	"moat/internal/testutil"
)

// moatBin is the binary built once by TestMain.
var moatBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "moat-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// local(8) re-executes the binary as the recipient (its delivery
	// child), so the recipient must reach it.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cleanup, err := ensureRecipients()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	moatBin = filepath.Join(dir, "moat")
	build := exec.Command("go", "build", "-o", moatBin, "moat/cmd/moat")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building moat: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// recipients are the local accounts the end-to-end tests deliver to:
// local(8) delivers only to real accounts, with their rights.
var recipients = []string{"user", "other", "across", "jailuser", "renamed", "valias1", "valias2"}

// ensureRecipients creates the accounts of recipients that do not exist
// (as root; without root, delivery tests skip) and returns a function that
// removes the ones it created.
func ensureRecipients() (func(), error) {
	var made []string
	cleanup := func() {
		for _, u := range made {
			exec.Command("userdel", u).Run()
		}
	}
	if os.Geteuid() != 0 {
		return cleanup, nil
	}
	for _, u := range recipients {
		if exec.Command("id", "-u", u).Run() == nil {
			continue
		}
		out, err := exec.Command("useradd", "-r", "-M", "-N", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", u).CombinedOutput()
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("useradd %s: %v\n%s", u, err, out)
		}
		made = append(made, u)
	}
	return cleanup, nil
}

// prepareDir makes a test's server directory reachable by the local
// accounts that mail is delivered to, and creates the mail spool as a
// world-writable sticky directory (as /tmp), where each recipient's
// delivery child creates its own Maildir.
func prepareDir(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	spool := filepath.Join(dir, "mail")
	if err := os.Mkdir(spool, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		t.Fatal(err)
	}
	if err := os.Chmod(spool, 0o1777); err != nil {
		t.Fatal(err)
	}
}

// server is one moat instance in its own directory: configuration,
// queue, Maildirs and log file all under dir.
type server struct {
	t    *testing.T
	dir  string
	port int // the smtp service's port on 127.0.0.1
	cmd  *exec.Cmd
	done chan error
	mu   sync.Mutex
}

// freePort asks the kernel for an unused loopback port. Another process
// could take it before moat binds it; on loopback in a test run that is
// rare enough, and start fails loudly if it happens.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// baseMainCF is the configuration every end-to-end server starts from.
// mynetworks deliberately excludes loopback, so that the test clients are
// treated as Internet clients (no relay permission, no exemption from the
// bare-newline checks) unless a test says otherwise. The tests send to
// local users that are not system accounts, so the unlisted-recipient
// check is off (local_recipient_maps empty; test/unlisted_test.go turns
// it on), and alias_maps is a table every test can open: the default
// hash:/etc/aliases may be missing or a Berkeley DB file here.
const baseMainCF = `compatibility_level = 3.6
alias_maps = inline:{ postmaster=root }
local_recipient_maps =
myhostname = mx.moat.test
mydomain = moat.test
mydestination = $myhostname, localhost, $mydomain
mynetworks = 192.0.2.0/24
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
queue_directory = {{DIR}}/spool
data_directory = {{DIR}}/lib
mail_spool_directory = {{DIR}}/mail/
maillog_file_prefixes = {{DIR}}
maillog_file = {{DIR}}/maillog
smtpd_client_port_logging = no
`

// startServer writes a configuration (baseMainCF plus extra main.cf
// lines, which override earlier ones) and starts moat on it.
func startServer(t *testing.T, extra string) *server {
	t.Helper()
	dir := t.TempDir()
	prepareDir(t, dir)
	s := &server{t: t, dir: dir, port: freePort(t)}
	mainCF := strings.ReplaceAll(baseMainCF+extra, "{{DIR}}", dir)
	masterCF := fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd\n", s.port)
	for name, data := range map[string]string{"main.cf": mainCF, "master.cf": masterCF} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start runs `moat postfix -c DIR start-fg` and waits for the greeting.
func (s *server) start() {
	s.t.Helper()
	cmd := exec.Command(moatBin, "postfix", "-c", s.dir, "start-fg")
	out, err := os.OpenFile(filepath.Join(s.dir, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	out.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr(), time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil && strings.HasPrefix(line, "220 ") {
				return
			}
		}
		select {
		case err := <-done:
			done <- err // for stop, which the test's cleanup runs
			s.t.Fatalf("moat exited while starting: %v\n%s", err, s.stderr())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("moat did not greet on %s within 15s\n%s", s.addr(), s.stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop asks moat to stop as `postfix stop` does (SIGTERM) and waits.
func (s *server) stop() {
	cmd, done := s.take()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			s.t.Errorf("moat exited with %v after SIGTERM\n%s", err, s.stderr())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		s.t.Errorf("moat did not stop within 20s of SIGTERM")
	}
}

// kill stops moat with SIGKILL, as a crash or the OOM killer would.
func (s *server) kill() {
	if cmd, done := s.take(); cmd != nil {
		cmd.Process.Kill()
		<-done
	}
}

// take hands the running process to whoever stops it, once.
func (s *server) take() (*exec.Cmd, chan error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	return cmd, done
}

func (s *server) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

func (s *server) stderr() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "stderr"))
	return string(b)
}

// log returns the mail log so far.
func (s *server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "maillog"))
	return string(b)
}

// waitLog waits until the mail log matches re (moat's log queue writes
// asynchronously) and returns the first match.
func (s *server) waitLog(re string, timeout time.Duration) string {
	s.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		if m := rx.FindString(s.log()); m != "" {
			return m
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("mail log has no match for %q within %v:\n%s", re, timeout, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLogCount waits until at least n log lines match re.
func (s *server) waitLogCount(re string, n int, timeout time.Duration) {
	s.t.Helper()
	rx := regexp.MustCompile("(?m)" + re)
	deadline := time.Now().Add(timeout)
	for {
		got := len(rx.FindAllStringIndex(s.log(), -1))
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("mail log has %d lines matching %q after %v, want %d", got, re, timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// maildir is the Maildir of a local user under mail_spool_directory.
func (s *server) maildir(user string) string { return filepath.Join(s.dir, "mail", user) }

// delivered counts the messages in a user's Maildir.
func (s *server) delivered(user string) int {
	n, err := maildir.Count(s.maildir(user))
	if errors.Is(err, fs.ErrNotExist) {
		return 0 // the Maildir is being created
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return n
}

// waitDelivered waits until a user's Maildir holds n messages and fails
// if it holds more.
func (s *server) waitDelivered(user string, n int, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.delivered(user)
		if got == n {
			return
		}
		if got > n {
			s.t.Fatalf("%s has %d messages, want %d", user, got, n)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s has %d messages after %v, want %d\nlog:\n%s", user, got, timeout, n, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runTool runs a real client program, bounded in time, and returns its
// combined output and exit error.
func runTool(t *testing.T, timeout time.Duration, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	path := testutil.Tool(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v: timed out after %v\n%s", name, args, timeout, out)
	}
	return string(out), err
}

// dialogue is a raw SMTP conversation for exact-byte tests.
type dialogue struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *dialogue {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &dialogue{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes raw bytes.
func (d *dialogue) send(s string) {
	d.t.Helper()
	if _, err := d.c.Write([]byte(s)); err != nil {
		d.t.Fatalf("write %q: %v", s, err)
	}
}

// reply reads one (possibly multi-line) reply and returns its lines
// without CRLF; on EOF it returns what it has with "EOF" appended.
func (d *dialogue) reply() []string {
	d.t.Helper()
	var lines []string
	for {
		line, err := d.r.ReadString('\n')
		if err != nil {
			return append(lines, "EOF")
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines
		}
	}
}

// expect reads one reply and fails unless its last line starts with want.
func (d *dialogue) expect(want string) []string {
	d.t.Helper()
	r := d.reply()
	if !strings.HasPrefix(r[len(r)-1], want) {
		d.t.Fatalf("reply %q, want %q", r, want)
	}
	return r
}

// cmd sends one command line and expects a reply starting with want.
func (d *dialogue) cmd(line, want string) []string {
	d.t.Helper()
	d.send(line + "\r\n")
	return d.expect(want)
}
