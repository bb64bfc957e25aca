package asuser

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"moat/internal/delivery/maildir"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
)

// executor starts Serve on a real UNIX socket in a directory every test
// account can traverse, and returns the socket's path and the log
// lines written so far.
func executor(t *testing.T, peers ...uint32) (string, *logSink) {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "local")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	sink := &logSink{}
	log := maillog.New(maillog.Options{Sink: sink, Fallback: sink, Daemon: "local", PID: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, moatBin, log, peers...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		log.Close(context.Background())
	})
	return sock, sink
}

// logSink keeps the executor's log lines.
type logSink struct{ maillogtest.Sink }

// has reports whether a logged text contains part, waiting briefly for
// the logger's writer goroutine.
func (s *logSink) has(part string) bool {
	for range 100 {
		for _, l := range s.Lines(func(r maillog.Record) string { return r.Text }) {
			if strings.Contains(l, part) {
				return true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func TestRunnerDeliverOverSocket(t *testing.T) {
	cr := account(t)
	sock, _ := executor(t)
	r := NewRunner(moatBin, sock)
	md := filepath.Join(userDir(t, cr), "Maildir") + "/"
	// More than a few frames, to see the content streamed whole.
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 5000)
	job := Job{Kind: KindMaildir, Path: md, Maildir: maildir.Options{}}
	path, err := r.DeliverFile(context.Background(), cr, job, strings.NewReader(testMsg+body))
	if err != nil {
		t.Fatal(err)
	}
	if u, g := owner(t, path); u != cr.UID || g != cr.GID {
		t.Errorf("%s owned by %d:%d, want %d:%d", path, u, g, cr.UID, cr.GID)
	}
	b, _ := os.ReadFile(path)
	if want := strings.ReplaceAll(testMsg+body, "\r\n", "\n"); string(b) != want {
		t.Errorf("file has %d bytes, want %d", len(b), len(want))
	}
	// The child's own classification comes back as it is.
	err = r.Deliver(context.Background(), cr, Job{Kind: KindMaildir, Path: "/root/nope/Maildir/"}, strings.NewReader(testMsg))
	wantDeliveryError(t, err, "4.2.0", "Permission denied")
	// A content read error is the client's and ends the child.
	err = r.Deliver(context.Background(), cr, job, &failReader{})
	wantDeliveryError(t, err, "4.3.0", "error reading message")
}

func TestRunnerRunOverSocket(t *testing.T) {
	cr := account(t)
	sock, _ := executor(t)
	r := NewRunner(moatBin, sock)
	res := r.Run(context.Background(), Command{
		Creds: cr, Argv: []string{"/bin/sh", "-c", "id -u; id -G; wc -c"},
		Env: []string{"PATH=/usr/bin:/bin"}, Stdin: strings.NewReader(strings.Repeat("x", 200000)),
		OutputLimit: 1000,
	})
	if res.Err != nil || res.Status != 0 {
		t.Fatalf("result %+v", res)
	}
	want := strconv.Itoa(int(cr.UID)) + "\n" + strconv.Itoa(int(cr.GID)) + "\n200000\n"
	if res.Output != want {
		t.Errorf("output %q, want %q", res.Output, want)
	}
	if res := r.Run(context.Background(), Command{Creds: Creds{}, Argv: []string{"/bin/true"}}); res.Err == nil || !strings.Contains(res.Err.Error(), "root privileges") {
		t.Errorf("uid 0 command: %+v", res)
	}
	res = r.Run(context.Background(), Command{Creds: cr, Argv: []string{"/bin/sh", "-c", "exit 75"}})
	if res.Status != 75 {
		t.Errorf("exit status %+v", res)
	}
	res = r.Run(context.Background(), Command{Creds: cr, Argv: []string{"/bin/sleep", "10"}, TimeLimit: 200 * time.Millisecond})
	if !res.TimedOut || res.Signal != int(syscall.SIGKILL) {
		t.Errorf("time limit: %+v", res)
	}
}

func TestRunnerReadFile(t *testing.T) {
	cr := account(t)
	sock, _ := executor(t)
	home, fwd, rootOnly := forwardHome(t, cr)
	for _, r := range []*Runner{NewRunner(moatBin, ""), NewRunner(moatBin, sock)} {
		f, err := r.ReadFile(context.Background(), cr, fwd, ReadOptions{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if string(f.Data) != "someone@example.com\n" || f.UID != cr.UID || f.Perm != 0o600 {
			t.Errorf("read %+v", f)
		}
		if _, err := r.ReadFile(context.Background(), cr, rootOnly, ReadOptions{Limit: 100}); !errors.Is(err, os.ErrPermission) {
			t.Errorf("root's file read as the user: %v", err)
		}
		if _, err := r.ReadFile(context.Background(), cr, filepath.Join(home, "none"), ReadOptions{Limit: 100}); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("missing file: %v", err)
		}
		if _, err := r.ReadFile(context.Background(), cr, filepath.Join(home, "link"), ReadOptions{Limit: 100}); !errors.Is(err, syscall.ELOOP) {
			t.Errorf("symbolic link without Follow: %v", err)
		}
		if f, err := r.ReadFile(context.Background(), cr, filepath.Join(home, "link"), ReadOptions{Limit: 100, Follow: true}); err != nil || f.UID != cr.UID {
			t.Errorf("symbolic link with Follow: %+v %v", f, err)
		}
		if _, err := r.ReadFile(context.Background(), cr, fwd, ReadOptions{Limit: 5}); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("over the limit: %v", err)
		}
		if _, err := r.ReadFile(context.Background(), cr, home, ReadOptions{Limit: 5}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("directory: %v", err)
		}
	}
}

// TestServeRefusesOtherPeers connects as an account that is neither root
// nor a listed peer: the executor answers nothing and logs why.
func TestServeRefusesOtherPeers(t *testing.T) {
	cr := account(t)
	other := account(t)
	sock, logBuf := executor(t, other.UID)
	script := `import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
try: s.sendall(b'{"Op":"run","Creds":{"UID":` + strconv.Itoa(int(cr.UID)) + `,"GID":` + strconv.Itoa(int(cr.GID)) + `},"Cmd":{"Argv":["/bin/true"]}}\n\0\0\0\0')
except OSError: pass
s.settimeout(10)
try: print(repr(s.recv(100)))
except OSError: print(repr(b''))`
	run := func(c Creds) string {
		cmd := exec.Command("/usr/bin/python3", "-c", script, sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: []uint32{}}}
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("python3: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := run(cr); got != "b''" {
		t.Errorf("unlisted peer got %s", got)
	}
	if !logBuf.has("refusing a request from uid " + strconv.Itoa(int(cr.UID))) {
		t.Errorf("no refusal logged")
	}
	if got := run(other); !strings.Contains(got, `"Status":0`) {
		t.Errorf("listed peer got %s", got)
	}
}

// rawRequest opens a connection and sends a request line.
func rawRequest(t *testing.T, sock string, req request) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestServeClientDeathKillsChild: a client gone while its command runs
// takes the command's whole process group with it.
func TestServeClientDeathKillsChild(t *testing.T) {
	cr := account(t)
	sock, _ := executor(t)
	dir := userDir(t, cr)
	pidFile := filepath.Join(dir, "pid")
	c := rawRequest(t, sock, request{Op: opRun, Creds: cr, Cmd: &wireCommand{
		Argv: []string{"/bin/sh", "-c", "sleep 60 & echo $! > " + pidFile + "; wait"},
	}})
	if _, err := c.Write([]byte{0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	var pid int
	for i := 0; i < 250 && pid == 0; i++ {
		time.Sleep(20 * time.Millisecond)
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if pid == 0 || !alive(pid) {
		t.Fatalf("the command did not start (pid %d)", pid)
	}
	c.Close()
	for i := 0; i < 250 && alive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("the command's background process %d survived its client", pid)
	}
}

// TestServeClientDeathMidMessage: a message cut short by its client's
// death is never delivered.
func TestServeClientDeathMidMessage(t *testing.T) {
	cr := account(t)
	sock, _ := executor(t)
	md := filepath.Join(userDir(t, cr), "Maildir") + "/"
	c := rawRequest(t, sock, request{Op: opDeliver, Creds: cr, Job: &Job{Kind: KindMaildir, Path: md}})
	fw := frameWriter{c}
	if _, err := fw.Write([]byte(testMsg)); err != nil {
		t.Fatal(err)
	}
	c.(*net.UnixConn).CloseWrite()
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	var resp response
	if err := json.Unmarshal([]byte(line), &resp); err != nil || resp.Result == nil || resp.Result.OK || resp.Result.DSN != "4.3.0" {
		t.Fatalf("answer %q (%v)", line, err)
	}
	assertNewEmpty(t, md)
}

// TestServeBadRequests: requests a Runner never sends are refused with
// a reason, and nothing runs.
func TestServeBadRequests(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	sock, _ := executor(t)
	for _, line := range []string{
		`{"Op":"run","Cmd":{"Argv":[]}}`,
		`{"Op":"exec","Cmd":{"Argv":["/bin/true"]}}`,
		`{"Op":"run","Cmd":{"Argv":["/bin/true"]},"Job":{"Kind":"maildir","Path":"/x/"}}`,
		`{"Op":"deliver","Job":{"Kind":"maildir","Path":"relative/"}}`,
		`{"Op":"read","Read":{"Path":"/etc/passwd","Limit":0}}`,
		`{"Op":"run","Cmd":{"Argv":["/bin/true"],"OutputLimit":99999999}}`,
		`{"Op":"run","Cmd":{"Argv":["/bin/true"]},"Extra":1}`,
		`not json`,
	} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(line + "\n"))
		ans, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		var resp response
		if json.Unmarshal([]byte(ans), &resp); resp.Error == "" || resp.Run != nil || resp.Result != nil {
			t.Errorf("%s: answer %q", line, ans)
		}
	}
}

// TestRunnerContextEnds: the client's context ends the work in the
// executor as it does here: a delivery is interrupted and leaves no
// message, a command is killed.
func TestRunnerContextEnds(t *testing.T) {
	cr := account(t)
	sock, _ := executor(t)
	r := NewRunner(moatBin, sock)
	md := userDir(t, cr) + "/Maildir/"
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := r.Deliver(ctx, cr, Job{Kind: KindMaildir, Path: md}, &blockingReader{ctx: ctx})
	cancel()
	wantDeliveryError(t, err, "4.3.0", "delivery interrupted")
	assertNewEmpty(t, md)

	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	start := time.Now()
	res := r.Run(ctx, Command{Creds: cr, Argv: []string{"/bin/sleep", "30"}})
	cancel()
	if !res.TimedOut || time.Since(start) > 10*time.Second {
		t.Errorf("command not ended by the context: %+v after %v", res, time.Since(start))
	}
}

// TestRunnerNoExecutor: an executor that is not there defers.
func TestRunnerNoExecutor(t *testing.T) {
	r := NewRunner(moatBin, filepath.Join(t.TempDir(), "none"))
	err := r.Deliver(context.Background(), Creds{UID: 1}, Job{Kind: KindMaildir, Path: "/x/"}, strings.NewReader(testMsg))
	wantDeliveryError(t, err, "4.3.0", "delivery service")
	if res := r.Run(context.Background(), Command{Creds: Creds{UID: 1}, Argv: []string{"/bin/true"}}); res.Err == nil {
		t.Errorf("Run without an executor: %+v", res)
	}
	if _, err := r.ReadFile(context.Background(), Creds{UID: 1}, "/etc/passwd", ReadOptions{Limit: 10}); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile without an executor: %v", err)
	}
}

// TestServeRefusesRoot: the executor writes nothing and runs nothing with
// root's uid or group, and reads as root only what anyone may read.
func TestServeRefusesRoot(t *testing.T) {
	cr := account(t)
	sock, logs := executor(t)
	r := NewRunner(moatBin, sock)
	dir := t.TempDir()
	for _, c := range []Creds{{UID: 0, GID: 0}, {UID: cr.UID, GID: 0}, {UID: cr.UID, GID: cr.GID, Groups: []uint32{0}}} {
		err := r.Deliver(context.Background(), c, Job{Kind: KindMbox, Path: filepath.Join(dir, "cron")}, strings.NewReader(testMsg))
		wantDeliveryError(t, err, "4.3.0", "root privileges")
		if res := r.Run(context.Background(), Command{Creds: c, Argv: []string{"/bin/true"}}); res.Err == nil {
			t.Errorf("command with %+v: %+v", c, res)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "cron")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was written as root: %v", err)
	}
	if !logs.has("refusing a deliver request with root privileges") {
		t.Errorf("no refusal logged")
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadFile(context.Background(), Creds{}, secret, ReadOptions{Limit: 10}); !errors.Is(err, os.ErrPermission) {
		t.Errorf("root-only file read as root for the client: %v", err)
	}
	if err := os.Chmod(secret, 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err := r.ReadFile(context.Background(), Creds{}, secret, ReadOptions{Limit: 10}); err != nil || string(f.Data) != "x" {
		t.Errorf("world-readable file as root: %+v %v", f, err)
	}
}

// forwardHome makes the user's 0700 home with a .forward the user owns,
// a root-only file ("secret") and a symlink to the .forward ("link"):
// what the executor's reads as the user must tell apart.
func forwardHome(t *testing.T, cr Creds) (home, fwd, rootOnly string) {
	t.Helper()
	home = userDir(t, cr)
	fwd = filepath.Join(home, ".forward")
	if err := os.WriteFile(fwd, []byte("someone@example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(fwd, int(cr.UID), int(cr.GID)); err != nil {
		t.Fatal(err)
	}
	rootOnly = filepath.Join(home, "secret")
	if err := os.WriteFile(rootOnly, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fwd, filepath.Join(home, "link")); err != nil {
		t.Fatal(err)
	}
	return home, fwd, rootOnly
}
