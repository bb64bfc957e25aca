package postfix

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"moat/internal/master"
	"moat/internal/testutil"
)

// moatBinary builds the real binary once per test run: start re-executes
// os.Executable(), which in a test would be the test binary.
var moatBinary = sync.OnceValues(func() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errNoGo
	}
	dir, err := os.MkdirTemp("", "moat-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "moat")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/moat")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

var errNoGo = errors.New("go not installed: cannot build the moat binary")

// repoRoot is set by buildMoat's first caller, before moatBinary runs.
var repoRoot string

func buildMoat(t *testing.T) string {
	t.Helper()
	if repoRoot == "" {
		repoRoot = testutil.RepoRoot(t)
	}
	bin, err := moatBinary()
	if errors.Is(err, errNoGo) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if repoRoot != "" { // a test built the binary
		if bin, err := moatBinary(); err == nil {
			os.RemoveAll(filepath.Dir(bin))
		}
	}
	os.Exit(code)
}

// freePort finds a loopback port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lifeDir writes a configuration whose queue, log and data live under one
// temporary directory, with one smtpd on port.
func lifeDir(t *testing.T, port int, banner string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeLife(t, dir, banner, fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd\n", port))
	return dir
}

func writeLife(t *testing.T, dir, banner, masterCf string) {
	t.Helper()
	mainCf := fmt.Sprintf(`queue_directory = %[1]s/spool
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.moat.test
mydestination = localhost
mail_spool_directory = %[1]s/mail/
alias_maps =
smtpd_banner = %[2]s
`, dir, banner)
	for name, text := range map[string]string{"main.cf": mainCf, "master.cf": masterCf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "spool"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// moatCmd runs `moat postfix -c dir ARGS` and returns its stderr and
// exit status.
func moatCmd(t *testing.T, bin, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"postfix", "-c", dir}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	st := 0
	if ee, ok := err.(*exec.ExitError); ok {
		st = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), st
}

// greeting connects and returns the server's first line.
func greeting(t *testing.T, port int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	return strings.TrimRight(string(buf[:n]), "\r\n")
}

// sendMail sends one message with Python's smtplib, a real client.
func sendMail(t *testing.T, port int) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	script := fmt.Sprintf(`import smtplib
s = smtplib.SMTP("127.0.0.1", %d, timeout=10)
s.ehlo("client.moat.test")
s.sendmail("a@moat.test", ["root@localhost"], "Subject: t\r\n\r\nhello\r\n")
s.quit()
`, port)
	if out, err := exec.Command(py, "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
}

func TestStartStatusReloadStopBinary(t *testing.T) {
	needRoot(t) // start runs postfix check, which wants mail_owner and root-owned files
	bin := buildMoat(t)
	port := freePort(t)
	dir := lifeDir(t, port, "first")
	pidPath := filepath.Join(dir, "spool", master.PIDFile)

	out, st := moatCmd(t, bin, dir, "start")
	if st != 0 || !strings.Contains(out, "postfix/postfix-script: starting the Postfix mail system\n") {
		t.Fatalf("start: status %d:\n%s", st, out)
	}
	pid, running, err := master.Status(pidPath)
	if !running || err != nil {
		t.Fatalf("after start: running %v, %v", running, err)
	}
	t.Cleanup(func() {
		if _, running, _ := master.Status(pidPath); running {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	// Ready means ready: the listener answers at once.
	if got := greeting(t, port); got != "220 first" {
		t.Fatalf("greeting %q", got)
	}
	sendMail(t, port)

	out, st = moatCmd(t, bin, dir, "status")
	if want := fmt.Sprintf("postfix/postfix-script: the Postfix mail system is running: PID: %d\n", pid); st != 0 || out != want {
		t.Fatalf("status: %d %q, want %q", st, out, want)
	}
	out, st = moatCmd(t, bin, dir, "start")
	if st != 1 || out != "postfix/postfix-script: fatal: the Postfix mail system is already running\n" {
		t.Fatalf("second start: %d %q", st, out)
	}

	writeLife(t, dir, "second", fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd\n", port))
	out, st = moatCmd(t, bin, dir, "reload")
	if st != 0 || out != "postfix/postfix-script: refreshing the Postfix mail system\n" {
		t.Fatalf("reload: %d %q", st, out)
	}
	waitFor(t, filepath.Join(dir, "maillog"), "reload -- version")
	if got := greeting(t, port); got != "220 second" {
		t.Fatalf("greeting after reload %q", got)
	}

	out, st = moatCmd(t, bin, dir, "stop")
	if st != 0 || !strings.HasPrefix(out, "postfix/postfix-script: stopping the Postfix mail system\n") {
		t.Fatalf("stop: %d %q", st, out)
	}
	if _, err := os.Stat(pidPath); !os.IsNotExist(err) {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		t.Errorf("PID file after stop: %v; stop said %q; log:\n%s", err, out, log)
	}
	out, st = moatCmd(t, bin, dir, "status")
	if st != 1 || out != "postfix/postfix-script: the Postfix mail system is not running\n" {
		t.Fatalf("status after stop: %d %q", st, out)
	}
	out, st = moatCmd(t, bin, dir, "stop")
	if st != 1 || out != "postfix/postfix-script: fatal: the Postfix mail system is not running\n" {
		t.Fatalf("stop when stopped: %d %q", st, out)
	}
	log := waitFor(t, filepath.Join(dir, "maillog"), "terminating on signal 15")
	for _, want := range []string{
		fmt.Sprintf("postfix/master[%d]: daemon started -- version", pid),
		"postfix/postfix-script[", // the script's own lines are logged too
		": starting the Postfix mail system",
		"postfix/smtpd[",
		"client=localhost[127.0.0.1]",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// The accepted message is in the queue, durably, or delivered.
	if got := storedMessages(t, dir); len(got) != 1 {
		t.Errorf("messages %v, want 1", got)
	}
}

func TestStartFailureReported(t *testing.T) {
	needRoot(t)
	bin := buildMoat(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := lifeDir(t, ln.Addr().(*net.TCPAddr).Port, "x")
	out, st := moatCmd(t, bin, dir, "start")
	if st != 1 || !strings.Contains(out, "postfix/master: fatal: master.cf, line 1: service") ||
		!strings.Contains(out, "address already in use") ||
		!strings.HasSuffix(out, "postfix/postfix-script: fatal: mail system startup failed\n") {
		t.Fatalf("start on a used port: %d:\n%s", st, out)
	}
	if _, running, _ := master.Status(filepath.Join(dir, "spool", master.PIDFile)); running {
		t.Fatal("a master runs after a failed start")
	}
}

func TestStartFgStopsOnSIGTERM(t *testing.T) {
	bin := buildMoat(t)
	port := freePort(t)
	dir := lifeDir(t, port, "fg")
	cmd := exec.Command(bin, "postfix", "-c", dir, "start-fg")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, filepath.Join(dir, "maillog"), "daemon started")
	if got := greeting(t, port); got != "220 fg" {
		t.Fatalf("greeting %q", got)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("start-fg exit: %v\n%s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatal("start-fg did not stop on SIGTERM")
	}
	waitFor(t, filepath.Join(dir, "maillog"), fmt.Sprintf("postfix/master[%d]: terminating on signal 15", cmd.Process.Pid))
	if out.String() != "postfix/postfix-script: starting the Postfix mail system\n" {
		t.Errorf("start-fg output %q", out.String())
	}
}

func TestStatusWithoutMaster(t *testing.T) {
	dir := lifeDir(t, 25, "x")
	out, st := runMain("-c", dir, "status")
	if st != 1 || out != "postfix/postfix-script: the Postfix mail system is not running\n" {
		t.Fatalf("status: %d %q", st, out)
	}
	out, st = runMain("-c", dir, "reload")
	if st != 1 || out != "postfix/postfix-script: fatal: the Postfix mail system is not running\n" {
		t.Fatalf("reload: %d %q", st, out)
	}
	// A PID file a crashed master left is not a running master.
	p := filepath.Join(dir, "spool", master.PIDFile)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte(master.FormatPID(os.Getpid())), 0o644)
	if out, st = runMain("-c", dir, "stop"); st != 1 || !strings.Contains(out, "is not running") {
		t.Fatalf("stop with a stale PID file: %d %q", st, out)
	}
}

// waitFor returns the file's content once it contains want (bounded).
func waitFor(t *testing.T, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks %q:\n%s", path, want, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStopMidDataKeepsOnlyAcknowledged stops the master while one client
// is in the middle of DATA: the message that got its 250 is in the queue,
// the unfinished one never got a 250 and left nothing behind.
func TestStopMidDataKeepsOnlyAcknowledged(t *testing.T) {
	bin := buildMoat(t)
	port := freePort(t)
	dir := lifeDir(t, port, "$myhostname ESMTP")
	cmd := exec.Command(bin, "postfix", "-c", dir, "start-fg")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor(t, filepath.Join(dir, "maillog"), "daemon started")
	sendMail(t, port)

	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	r := bufio.NewReader(c)
	expect := func(prefix string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v", prefix, err)
			}
			if strings.HasPrefix(line, prefix+" ") {
				return
			}
		}
	}
	expect("220")
	for _, step := range []struct{ cmd, reply string }{
		{"EHLO client.moat.test", "250"}, {"MAIL FROM:<a@moat.test>", "250"},
		{"RCPT TO:<root@localhost>", "250"}, {"DATA", "354"},
	} {
		fmt.Fprintf(c, "%s\r\n", step.cmd)
		expect(step.reply)
	}
	fmt.Fprintf(c, "Subject: unfinished\r\n\r\nhalf a message\r\n")
	cmd.Process.Signal(syscall.SIGTERM)
	rest, _ := io.ReadAll(r)
	if strings.Contains(string(rest), "250") {
		t.Fatalf("unfinished message acknowledged: %q", rest)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("start-fg: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("master did not stop")
	}
	// The acknowledged message is queued or, if the queue manager got to
	// it, delivered; the unfinished one is nowhere.
	if got := storedMessages(t, dir); len(got) != 1 {
		t.Fatalf("messages after stop: %v, want the one acknowledged", got)
	}
}

// storedMessages lists the message files under the queue's incoming,
// active and deferred directories and under every Maildir's new/.
func storedMessages(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	for _, root := range []string{filepath.Join(dir, "spool", "incoming"), filepath.Join(dir, "spool", "active"), filepath.Join(dir, "spool", "deferred"), filepath.Join(dir, "mail")} {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (!strings.HasPrefix(root, filepath.Join(dir, "mail")) || filepath.Base(filepath.Dir(p)) == "new") {
				files = append(files, p)
			}
			return nil
		})
	}
	return files
}

// TestStartFgBadConfig: a configuration error stops start-fg with the
// file, the line and a non-zero status, before anything listens.
func TestStartFgBadConfig(t *testing.T) {
	dir := lifeDir(t, freePort(t), "x")
	f, err := os.OpenFile(filepath.Join(dir, "main.cf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("message_size_limit = lots\n")
	f.Close()
	out, st := runMain("-c", dir, "start-fg")
	if st != 1 || !strings.Contains(out, "postfix/master: fatal: ") || !strings.Contains(out, "main.cf") || !strings.Contains(out, "message_size_limit") {
		t.Fatalf("start-fg with a bad main.cf: %d:\n%s", st, out)
	}
	if _, running, _ := master.Status(filepath.Join(dir, "spool", master.PIDFile)); running {
		t.Fatal("running after a failed start-fg")
	}
}
