package mbox

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"moat/internal/delivery"
)

var when = time.Date(2026, 11, 22, 21, 4, 5, 0, time.Local)

func wantErr(t *testing.T, err error, dsn, text string) {
	t.Helper()
	var de *delivery.Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T), want *delivery.Error", err, err)
	}
	if de.DSN != dsn || !strings.Contains(de.Text, text) {
		t.Fatalf("error %s %q, want %s with %q", de.DSN, de.Text, dsn, text)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mbox")
	opts := Options{Sender: "a b@example.com", Time: when, ReturnPath: true, Recipient: "u@example.org",
		OrigRecipient: "U@example.org", Create: true, Fcntl: true, DotLock: true}
	msg := "Subject: x\r\n\r\nFrom here\r\n>From there\r\nFrom\r\nbare\rcr\r\nno newline"
	if err := Deliver(path, strings.NewReader(msg), opts); err != nil {
		t.Fatal(err)
	}
	opts.Sender, opts.ReturnPath, opts.Recipient, opts.OrigRecipient = "", true, "", ""
	if err := Deliver(path, strings.NewReader("Subject: y\r\n\r\nFrom: me\r\n"), opts); err != nil {
		t.Fatal(err)
	}
	want := "From \"a b\"@example.com  Sun Nov 22 21:04:05 2026\n" +
		"Return-Path: <\"a b\"@example.com>\n" +
		"X-Original-To: U@example.org\n" +
		"Delivered-To: u@example.org\n" +
		"Subject: x\n\n>From here\n>From there\nFrom\nbare\rcr\nno newline\n\n" +
		"From MAILER-DAEMON  Sun Nov 22 21:04:05 2026\n" +
		"Return-Path: <>\n" +
		"Subject: y\n\nFrom: me\n\n"
	if got := read(t, path); got != want {
		t.Errorf("mbox:\n%q\nwant\n%q", got, want)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("dot-lock left behind: %v", err)
	}
}

func TestSeparatorRepair(t *testing.T) {
	dir := t.TempDir()
	for in, want := range map[string]string{
		"":                   "",
		"From x\n\nbody":     "From x\n\nbody\n\n",
		"From x\n\nbody\n":   "From x\n\nbody\n\n",
		"From x\n\nbody\n\n": "From x\n\nbody\n\n",
	} {
		path := filepath.Join(dir, "m")
		os.WriteFile(path, []byte(in), 0o600)
		if err := Deliver(path, strings.NewReader("b\r\n"), Options{Time: when}); err != nil {
			t.Fatal(err)
		}
		if got := read(t, path); got != want+"From MAILER-DAEMON  Sun Nov 22 21:04:05 2026\nb\n\n" {
			t.Errorf("after %q: %q", in, got)
		}
	}
}

func TestNoCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mbox")
	err := Deliver(path, strings.NewReader("x\r\n"), Options{})
	wantErr(t, err, "5.2.0", "cannot open file: No such file or directory")
	err = Deliver(path, strings.NewReader("x\r\n"), Options{DefaultDSN: "4.2.0"})
	wantErr(t, err, "4.2.0", "cannot open file")
}

func TestRefusesLinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o600)
	sym := filepath.Join(dir, "sym")
	os.Symlink(target, sym)
	wantErr(t, Deliver(sym, strings.NewReader("x\r\n"), Options{Create: true}), "5.2.0", "file is a symbolic link")
	hard := filepath.Join(dir, "hard")
	os.Link(target, hard)
	wantErr(t, Deliver(hard, strings.NewReader("x\r\n"), Options{}), "5.2.0", "file has 2 hard links")
	wantErr(t, Deliver(dir, strings.NewReader("x\r\n"), Options{}), "5.2.0", "")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	wantErr(t, Deliver(fifo, strings.NewReader("x\r\n"), Options{}), "5.2.0", "is not a regular file")
	if b := read(t, target); b != "" {
		t.Errorf("target written through a link: %q", b)
	}
}

func TestSizeLimitTruncates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mbox")
	opts := Options{Create: true, Time: when, SizeLimit: 200}
	if err := Deliver(path, strings.NewReader("small\r\n"), opts); err != nil {
		t.Fatal(err)
	}
	before := read(t, path)
	err := Deliver(path, strings.NewReader(strings.Repeat("x", 300)+"\r\n"), opts)
	wantErr(t, err, "5.2.2", "error writing message: File too large")
	if !errors.Is(err, syscall.EFBIG) {
		t.Errorf("errno lost")
	}
	if got := read(t, path); got != before {
		t.Errorf("not truncated back: %q", got)
	}
}

type failReader struct{ n int }

func (f *failReader) Read(p []byte) (int, error) {
	if f.n > 2 {
		return 0, syscall.EIO
	}
	f.n++
	return copy(p, strings.Repeat("line\r\n", 20000)), nil
}

func TestReadErrorTruncates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mbox")
	os.WriteFile(path, []byte("From x  Sun Nov 22 21:04:05 2026\nold\n\n"), 0o600)
	err := Deliver(path, &failReader{}, Options{Fcntl: true, DotLock: true})
	wantErr(t, err, "4.3.0", "error reading message: Input/output error")
	if got := read(t, path); got != "From x  Sun Nov 22 21:04:05 2026\nold\n\n" {
		t.Errorf("not truncated back: %d bytes", len(got))
	}
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("dot-lock left behind")
	}
}

// Concurrent deliveries in one process: the open-file-description fcntl
// lock, flock and the dot-lock each keep whole messages apart.
func TestConcurrent(t *testing.T) {
	for _, opts := range []Options{{Fcntl: true}, {Flock: true}, {DotLock: true}} {
		path := filepath.Join(t.TempDir(), "mbox")
		opts.Create, opts.Time, opts.LockDelay, opts.LockAttempts = true, when, time.Millisecond, 5000
		big := strings.Repeat("0123456789012345678901234567890123456789\r\n", 5000) // 210 KB
		const n = 4
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := Deliver(path, strings.NewReader("Subject: s\r\n\r\n"+big), opts); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		msgs := split(read(t, path))
		if len(msgs) != n {
			t.Fatalf("%+v: %d messages, want %d", opts, len(msgs), n)
		}
		want := "Subject: s\n\n" + strings.ReplaceAll(big, "\r\n", "\n")
		for i, m := range msgs {
			if m.body != want {
				t.Errorf("%+v: message %d damaged (%d bytes)", opts, i, len(m.body))
			}
		}
	}
}

// A lock another process holds (Python's fcntl.lockf is a classic POSIX
// lock) makes us wait, and fail with 4.2.0 when it outlasts our attempts.
func TestFcntlLockHeldElsewhere(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mbox")
	os.WriteFile(path, nil, 0o600)
	py := exec.Command("python3", "-c", `
import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.lockf(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
`, path, "1.0")
	out, err := py.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := py.Start(); err != nil {
		t.Skip("python3:", err)
	}
	defer py.Wait()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	err = Deliver(path, strings.NewReader("x\r\n"), Options{Fcntl: true, LockAttempts: 2, LockDelay: 10 * time.Millisecond})
	wantErr(t, err, "4.2.0", "unable to lock for exclusive access: Resource temporarily unavailable")
	start := time.Now()
	err = Deliver(path, strings.NewReader("x\r\n"), Options{Fcntl: true, LockAttempts: 100, LockDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("after the holder let go: %v", err)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Errorf("did not wait for the lock")
	}
}

func TestDotLockBusyAndStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mbox")
	os.WriteFile(path+".lock", nil, 0)
	err := Deliver(path, strings.NewReader("x\r\n"), Options{Create: true, DotLock: true, LockAttempts: 2, LockDelay: 10 * time.Millisecond})
	wantErr(t, err, "4.2.0", "unable to create lock file "+path+".lock: File exists")
	// The same lock counts as stale once it is older than StaleLockTime.
	time.Sleep(20 * time.Millisecond)
	err = Deliver(path, strings.NewReader("x\r\n"), Options{Create: true, DotLock: true, LockAttempts: 2, LockDelay: 10 * time.Millisecond, StaleLockTime: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".lock"); !os.IsNotExist(err) {
		t.Errorf("lock left behind")
	}
}

// message is one message as an mbox reader sees it.
type message struct{ from, body string }

// split is a minimal mbox reader: a line starting with "From " begins a
// message, the blank line before the next one belongs to the format, and
// ">From " at a line start loses its '>' (mboxo).
func split(s string) []message {
	var msgs []message
	var body strings.Builder
	end := func() {
		if len(msgs) > 0 {
			msgs[len(msgs)-1].body = strings.TrimSuffix(body.String(), "\n")
		}
		body.Reset()
	}
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(l, "From ") {
			end()
			msgs = append(msgs, message{from: l})
			continue
		}
		if strings.HasPrefix(l, ">From ") {
			l = l[1:]
		}
		body.WriteString(l)
	}
	end()
	return msgs
}

func TestDotLockMayFail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "mbox")
	err := Deliver(path, strings.NewReader("x\r\n"), Options{DotLock: true})
	wantErr(t, err, "5.2.0", "unable to create lock file "+path+".lock: No such file or directory")
	err = Deliver(path, strings.NewReader("x\r\n"), Options{DotLock: true, DotLockMayFail: true})
	wantErr(t, err, "5.2.0", "cannot open file: No such file or directory")
}
