// Package dovecot starts a private instance of the real Dovecot (Debian's
// dovecot-core and dovecot-lmtpd) for tests: moat's lmtp(8) agent delivers
// to its LMTP listeners, and SASL tests (issue 7) authenticate against its
// auth socket. The instance has its own configuration, base_dir, log and
// mail store in a temporary directory; /etc/dovecot is never read or
// touched, and the server is stopped when the test ends.
//
// The set-up is the one Postfix's LMTP_README and Dovecot's
// howto/postfix_dovecot_lmtp describe: a passwd-file passdb/userdb of
// virtual users, mail_location = maildir:..., one LMTP listener on a UNIX
// socket and one on 127.0.0.1, so an unknown user gets Dovecot's
// "550 5.1.1 <x@y> User doesn't exist".
package dovecot

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is where Debian's dovecot-core installs the master.
const Binary = "/usr/sbin/dovecot"

// Options say which users exist and who owns their mail.
type Options struct {
	// Users maps each valid address ("alice@example.com") to its plain
	// text password (for SASL tests; "" is fine for delivery-only tests).
	Users map[string]string
	// UID and GID own the mail store; Dovecot's lmtp process switches to
	// them before it writes (mail_uid semantics). Zero means 5000, an id no
	// Debian system account uses.
	UID, GID int
	// Extra is appended verbatim to dovecot.conf (a setting a test needs,
	// such as "lmtp_rcpt_check_quota = yes").
	Extra string
	// LMTPSocket, when set, is where the LMTP UNIX socket goes instead of
	// the instance's directory: QUEUE/private/dovecot-lmtp, as Postfix
	// set-ups place it so a chrooted lmtp(8) reaches it. The directory
	// must exist.
	LMTPSocket string
	// AuthSocket, when set, is where the auth client socket goes:
	// QUEUE/private/auth, Postfix's smtpd_sasl_path = private/auth, which
	// a chrooted smtpd reaches inside its jail. The directory must exist.
	AuthSocket string
}

// Server is one running Dovecot instance.
type Server struct {
	// Dir is the instance's directory: dovecot.conf, users, run/, mail/.
	Dir string
	// LMTPSocket is the LMTP UNIX-domain socket (lmtp:unix:PATH).
	LMTPSocket string
	// LMTPAddr is the LMTP TCP listener, "127.0.0.1:PORT"
	// (lmtp:inet:ADDR).
	LMTPAddr string
	// AuthSocket is the auth service's client socket, for
	// smtpd_sasl_type = dovecot (smtpd_sasl_path).
	AuthSocket string
	// AuthAddr is the same service on 127.0.0.1 ("127.0.0.1:PORT",
	// smtpd_sasl_path = inet:ADDR).
	AuthAddr string

	uid, gid int
	cmd      *exec.Cmd
	logPath  string
	out      *lockedBuffer
	done     chan struct{}
	waitErr  error
}

// lockedBuffer collects the master's stdout/stderr, which the exec
// package's copier writes while a failing test may read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startWait bounds how long Start waits for the listeners; Dovecot is up
// in well under a second on an idle machine, but CI machines are shared.
const startWait = 15 * time.Second

// Start runs Dovecot in the foreground (dovecot -F) and returns once both
// LMTP listeners and the auth socket accept connections. It needs root (the
// master binds, then drops to dovecot/dovenull and to UID for delivery)
// and skips the test when Dovecot is not installed, failing instead under
// CI where scripts/test-deps installs it. The server is killed, and its
// directory removed, in t.Cleanup; a failing test gets Dovecot's log.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("dovecot is not installed; run scripts/test-deps")
		}
		t.Skipf("dovecot is not installed (scripts/test-deps installs it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("starting Dovecot needs root")
	}
	if opts.UID == 0 {
		opts.UID = 5000
	}
	if opts.GID == 0 {
		opts.GID = 5000
	}
	// Not t.TempDir(): UNIX socket paths are limited to 108 bytes, and a
	// long test name would overflow them.
	dir, err := os.MkdirTemp("", "dovecot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var lastErr error
	// A port picked by listening on :0 and closing can be taken by
	// someone else before Dovecot binds it; try a few.
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(dir, opts)
		if err == nil {
			t.Cleanup(func() {
				s.Stop()
				if t.Failed() {
					t.Logf("dovecot log:\n%s", s.Log())
				}
			})
			return s
		}
		lastErr = err
	}
	t.Fatalf("dovecot: %v", lastErr)
	return nil
}

func start(dir string, opts Options) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	authPort, err := freePort()
	if err != nil {
		return nil, err
	}
	authSocket := opts.AuthSocket
	if authSocket == "" {
		authSocket = filepath.Join(dir, "auth")
	}
	lmtpSocket := opts.LMTPSocket
	if lmtpSocket == "" {
		lmtpSocket = filepath.Join(dir, "lmtp")
	}
	s := &Server{
		Dir:        dir,
		LMTPSocket: lmtpSocket,
		LMTPAddr:   fmt.Sprintf("127.0.0.1:%d", port),
		AuthSocket: authSocket,
		AuthAddr:   fmt.Sprintf("127.0.0.1:%d", authPort),
		uid:        opts.UID,
		gid:        opts.GID,
		logPath:    filepath.Join(dir, "dovecot.log"),
		out:        &lockedBuffer{},
		done:       make(chan struct{}),
	}
	// Dovecot's unprivileged processes and the mail user must reach
	// their files under dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	for _, sub := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	mail := filepath.Join(dir, "mail")
	if err := os.MkdirAll(mail, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(mail, opts.UID, opts.GID); err != nil {
		return nil, err
	}
	for _, p := range []string{s.LMTPSocket, s.AuthSocket, s.logPath} {
		os.Remove(p) // a previous attempt's
	}
	if err := os.WriteFile(filepath.Join(dir, "users"), usersFile(opts.Users), 0o644); err != nil {
		return nil, err
	}
	conf := s.config(port, authPort, opts.Extra)
	if err := os.WriteFile(filepath.Join(dir, "dovecot.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	s.cmd = exec.Command(Binary, "-F", "-c", filepath.Join(dir, "dovecot.conf"))
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	// Its own process group, so Stop reaches the children too if the
	// master dies without taking them down.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", Binary, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w\n%s", err, s.Log())
	}
	return s, nil
}

// config renders dovecot.conf. username_format=%u keeps the full address
// as the user name, as Postfix's LMTP client sends it.
func (s *Server) config(port, authPort int, extra string) string {
	d := s.Dir
	return fmt.Sprintf(`# written by moat's internal/testutil/dovecot
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = no
protocols = lmtp
listen = 127.0.0.1
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:%[1]s/mail/%%d/%%n/Maildir
postmaster_address = postmaster@example.com
auth_mechanisms = plain login cram-md5
disable_plaintext_auth = no
auth_failure_delay = 0
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/users
}
userdb {
  driver = passwd-file
  args = username_format=%%u %[1]s/users
  default_fields = uid=%[2]d gid=%[3]d home=%[1]s/mail/%%d/%%n
}
service lmtp {
  unix_listener %[6]s {
    mode = 0666
  }
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[4]d
  }
}
service auth {
  unix_listener %[8]s {
    mode = 0666
  }
  inet_listener auth-inet {
    address = 127.0.0.1
    port = %[7]d
  }
}
%[5]s
`, d, s.uid, s.gid, port, extra, s.LMTPSocket, authPort, s.AuthSocket)
}

// usersFile is a passwd-file (Dovecot's auth-passwd-file): name, password
// and empty uid/gid/home fields, which the userdb's default_fields fill.
func usersFile(users map[string]string) []byte {
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, u := range names {
		fmt.Fprintf(&b, "%s:{PLAIN}%s::::::\n", u, users[u])
	}
	return b.Bytes()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls the listeners until they accept, the master exits or
// startWait passes.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(startWait)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("dovecot exited while starting: %v", s.waitErr)
		default:
		}
		err := s.dialAll()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dovecot not ready after %v: %w", startWait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) dialAll() error {
	for _, a := range [][2]string{{"unix", s.LMTPSocket}, {"tcp", s.LMTPAddr}, {"unix", s.AuthSocket}, {"tcp", s.AuthAddr}} {
		c, err := net.DialTimeout(a[0], a[1], time.Second)
		if err != nil {
			return err
		}
		c.Close()
	}
	return nil
}

// Stop ends the instance: SIGTERM to the master, which stops its children,
// then SIGKILL to the whole process group after a second (Dovecot's
// master can take seconds to shut down, and a test has no mail in flight
// by then: every delivery it made has been answered). It is safe to call
// more than once.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	select {
	case <-s.done:
	default:
		syscall.Kill(pgid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.done
		}
	}
	// Children that outlived the master (they normally exit with it).
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// Log returns Dovecot's log file and anything the master wrote to its
// standard streams, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b) + s.out.String()
}

// MailDir returns the Maildir of user ("alice@example.com"), as
// mail_location places it; it exists after the first delivery.
func (s *Server) MailDir(user string) string {
	local, domain, _ := strings.Cut(user, "@")
	return filepath.Join(s.Dir, "mail", domain, local, "Maildir")
}

// Messages returns the files of user's INBOX (new/ and cur/), oldest name
// first; a user with no mail yet has none.
func (s *Server) Messages(user string) ([][]byte, error) {
	var names []string
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(s.MailDir(user), sub)
		ents, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			names = append(names, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(names)
	out := make([][]byte, 0, len(names))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Body returns what follows the header lines Dovecot's LMTP server prepends
// to a stored message (Return-Path:, Received: and its continuation
// lines, Delivered-To: when it adds one), so a test can compare the rest
// byte for byte with what it sent (with LF line ends: Dovecot's Maildir
// stores LF).
func Body(stored []byte) []byte {
	rest := stored
	received := false
	for {
		line, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return rest
		}
		switch {
		case bytes.HasPrefix(line, []byte("Return-Path:")),
			bytes.HasPrefix(line, []byte("Delivered-To:")):
		case bytes.HasPrefix(line, []byte("Received:")) && !received:
			// Dovecot adds one; a second is the message's own.
			received = true
		case len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && len(rest) < len(stored):
			// continuation of a prepended header
		default:
			return rest
		}
		rest = after
	}
}
