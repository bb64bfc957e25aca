package asuser

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"moat/internal/cli"
	"moat/internal/delivery"
	"moat/internal/delivery/maildir"
	"moat/internal/delivery/mbox"
)

const testMsg = "Subject: hi\r\n\r\nbody\r\n"

func owner(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

func wantDeliveryError(t *testing.T, err error, dsn, textPart string) {
	t.Helper()
	var de *delivery.Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T), want *delivery.Error", err, err)
	}
	if de.DSN != dsn || !strings.Contains(de.Text, textPart) {
		t.Fatalf("error %s %q, want %s containing %q", de.DSN, de.Text, dsn, textPart)
	}
}

func TestDeliverMaildirAsUser(t *testing.T) {
	noLeak(t)
	cr := account(t)
	md := filepath.Join(userDir(t, cr), "Maildir") + "/"
	job := Job{Kind: KindMaildir, Path: md, Maildir: maildir.Options{ReturnPath: true, Sender: "a@example.com", Recipient: cr.User + "@example.com"}}
	path, err := DeliverFile(context.Background(), moatBin, cr, job, strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(path) != filepath.Join(md, "new") {
		t.Errorf("path %s not in new/", path)
	}
	for _, p := range []string{md, filepath.Join(md, "new"), path} {
		if u, g := owner(t, p); u != cr.UID || g != cr.GID {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, u, g, cr.UID, cr.GID)
		}
	}
	b, _ := os.ReadFile(path)
	want := "Return-Path: <a@example.com>\nDelivered-To: " + cr.User + "@example.com\nSubject: hi\n\nbody\n"
	if string(b) != want {
		t.Errorf("file %q, want %q", b, want)
	}
}

func TestDeliverRootMailbox(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	md := filepath.Join(t.TempDir(), "Maildir") + "/"
	path, err := DeliverFile(context.Background(), moatBin, Creds{User: "root"}, Job{Kind: KindMaildir, Path: md}, strings.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := owner(t, path); u != 0 {
		t.Errorf("root's mail owned by %d", u)
	}
}

func TestDeliverPermissionDenied(t *testing.T) {
	cr := account(t)
	base := userDir(t, cr)
	if err := os.Chown(base, 0, 0); err != nil { // root's 0700: not the user's
		t.Fatal(err)
	}
	err := Deliver(context.Background(), moatBin, cr, Job{Kind: KindMaildir, Path: base + "/Maildir/"}, strings.NewReader(testMsg))
	wantDeliveryError(t, err, "4.2.0", "maildir delivery failed: create maildir file")
	if !errors.Is(err, syscall.EACCES) {
		t.Errorf("errno lost: %v", errors.Unwrap(err))
	}
}

func TestDeliverBadJob(t *testing.T) {
	for _, j := range []Job{{Kind: "x", Path: "/tmp/x"}, {Kind: KindMbox, Path: "rel"}, {Kind: KindMbox, Path: "/a\x00b"}} {
		err := Deliver(context.Background(), moatBin, Creds{UID: 1}, j, strings.NewReader(testMsg))
		wantDeliveryError(t, err, "4.3.0", "delivery child failed")
	}
}

// childPID finds our delivery child in /proc.
func childPID(t *testing.T) int {
	for i := 0; i < 100; i++ {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
			f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
			if bytes.Contains(cmd, []byte(ChildVerb)) && len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("delivery child not found")
	return 0
}

// killingReader hands out half the message, then kills the child and
// hands out the rest.
type killingReader struct {
	t      *testing.T
	n      int
	killed bool
}

func (k *killingReader) Read(p []byte) (int, error) {
	if k.n >= 4<<20 {
		return 0, io.EOF
	}
	if k.n >= 2<<20 && !k.killed {
		k.killed = true
		if err := syscall.Kill(childPID(k.t), syscall.SIGKILL); err != nil {
			k.t.Error(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	n := min(len(p), 4<<20-k.n)
	for i := range p[:n] {
		p[i] = 'x'
		if i%64 == 63 {
			p[i] = '\n'
		}
	}
	k.n += n
	return n, nil
}

func assertNewEmpty(t *testing.T, md string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(md, "new"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("%d files in new/ after a failed delivery", len(ents))
	}
}

func TestDeliverChildKilled(t *testing.T) {
	noLeak(t)
	cr := account(t)
	md := userDir(t, cr) + "/Maildir/"
	_, err := deliverFile(context.Background(), moatBin, cr, Job{Kind: KindMaildir, Path: md}, &killingReader{t: t}, false)
	wantDeliveryError(t, err, "4.3.0", "delivery child failed: signal: killed")
	assertNewEmpty(t, md)
}

// blockingReader gives one chunk, then blocks until ctx ends.
type blockingReader struct {
	ctx  context.Context
	sent bool
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "Subject: x\r\n\r\n"), nil
	}
	<-b.ctx.Done()
	return copy(p, "more\r\n"), nil
}

func TestDeliverContextEnds(t *testing.T) {
	noLeak(t)
	cr := account(t)
	md := userDir(t, cr) + "/Maildir/"
	for _, onThread := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		_, err := deliverFile(ctx, moatBin, cr, Job{Kind: KindMaildir, Path: md}, &blockingReader{ctx: ctx}, onThread)
		cancel()
		wantDeliveryError(t, err, "4.3.0", "delivery child failed: delivery interrupted")
		assertNewEmpty(t, md)
	}
}

type failReader struct{ n int }

func (f *failReader) Read(p []byte) (int, error) {
	if f.n > 0 {
		return 0, syscall.EIO
	}
	f.n++
	return copy(p, "Subject: x\r\n\r\npart"), nil
}

func TestDeliverContentReadError(t *testing.T) {
	noLeak(t)
	cr := account(t)
	md := userDir(t, cr) + "/Maildir/"
	err := Deliver(context.Background(), moatBin, cr, Job{Kind: KindMaildir, Path: md}, &failReader{})
	wantDeliveryError(t, err, "4.3.0", "maildir delivery failed: error reading message: Input/output error")
	assertNewEmpty(t, md)
}

// The child's own checks, in process: a dead parent (no commit line) and
// a wrong uid both fail without a file in new/.
func TestChildChecks(t *testing.T) {
	md := t.TempDir() + "/Maildir/"
	job := func(w wireJob, commit bool) *bufio.Reader {
		b, _ := jsonLine(w)
		if commit {
			b = append(b, commitLine...)
		}
		return bufio.NewReader(bytes.NewReader(b))
	}
	w := wireJob{Job: Job{Kind: KindMaildir, Path: md}}
	r := childDeliver(strings.NewReader(testMsg), job(w, false))
	if r.OK || !strings.Contains(r.Text, "essage incomplete") {
		t.Errorf("no commit: %+v", r)
	}
	assertNewEmpty(t, md)
	w.CheckUID, w.UID = true, uint32(os.Getuid()+4242)
	r = childDeliver(strings.NewReader(testMsg), job(w, true))
	if r.OK || !strings.Contains(r.Text, "want uid") {
		t.Errorf("wrong uid: %+v", r)
	}
	w.CheckUID = false
	if r = childDeliver(strings.NewReader(testMsg), job(w, true)); !r.OK {
		t.Errorf("good job: %+v", r)
	}
	if r = childDeliver(strings.NewReader(testMsg), bufio.NewReader(strings.NewReader("{garbage\n"))); r.OK || r.DSN != "4.3.0" {
		t.Errorf("garbage job: %+v", r)
	}
}

func TestChildMainByHand(t *testing.T) {
	var out bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	if ChildMain(env, ChildVerb, []string{"x"}) != 1 {
		t.Error("extra argument accepted")
	}
}

func TestDeliverMboxAsUser(t *testing.T) {
	cr := account(t)
	path := filepath.Join(userDir(t, cr), "mbox")
	job := Job{Kind: KindMbox, Path: path, Mbox: mbox.Options{Sender: "a@example.com", ReturnPath: true, Create: true, Fcntl: true, DotLock: true}}
	for i := 0; i < 2; i++ {
		got, err := DeliverFile(context.Background(), moatBin, cr, job, strings.NewReader(testMsg))
		if err != nil {
			t.Fatal(err)
		}
		if got != path {
			t.Errorf("path %q", got)
		}
	}
	if u, g := owner(t, path); u != cr.UID || g != cr.GID {
		t.Errorf("mbox owned by %d:%d, want %d:%d", u, g, cr.UID, cr.GID)
	}
	b, _ := os.ReadFile(path)
	if strings.Count(string(b), "From a@example.com  ") != 2 || strings.Count(string(b), "Return-Path: <a@example.com>\nSubject: hi\n\nbody\n\n") != 2 {
		t.Errorf("mbox:\n%s", b)
	}
	// Someone else's file: the recipient cannot open it, and the
	// child's classification (mbox_open's default 5.2.0) comes back.
	other := filepath.Join(filepath.Dir(path), "root-owned")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := Deliver(context.Background(), moatBin, cr, Job{Kind: KindMbox, Path: other}, strings.NewReader(testMsg))
	wantDeliveryError(t, err, "5.2.0", "cannot open file: Permission denied")
}

// A credentialed thread's identity stays on that thread: both ways of
// delivering write files the account owns, the kernel refuses what the
// account may not write (a root-only directory), and afterwards no thread
// of this process keeps a non-root file-system id while the test's own
// writes are still root's.
func TestThreadIdentityStaysOnItsThread(t *testing.T) {
	cr := account(t)
	for _, onThread := range []bool{true, false} {
		md := filepath.Join(userDir(t, cr), fmt.Sprint("Maildir", onThread)) + "/"
		path, err := deliverFile(context.Background(), moatBin, cr, Job{Kind: KindMaildir, Path: md}, strings.NewReader(testMsg), onThread)
		if err != nil {
			t.Fatalf("onThread=%v: %v", onThread, err)
		}
		if u, g := owner(t, path); u != cr.UID || g != cr.GID {
			t.Errorf("onThread=%v: %s owned by %d:%d, want %d:%d", onThread, path, u, g, cr.UID, cr.GID)
		}
	}
	rootOnly := t.TempDir() // 0700 root
	_, err := deliverFile(context.Background(), moatBin, cr, Job{Kind: KindMaildir, Path: rootOnly + "/Maildir/"}, strings.NewReader(testMsg), true)
	wantDeliveryError(t, err, "4.2.0", "ermission denied")
	for range 20 {
		md := filepath.Join(userDir(t, cr), "many") + "/"
		if _, err := deliverFile(context.Background(), moatBin, cr, Job{Kind: KindMaildir, Path: md}, strings.NewReader(testMsg), true); err != nil {
			t.Fatal(err)
		}
	}
	// The locked threads exit once their goroutines end; under load that
	// may take a moment, so poll (bounded).
	var bad []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		bad = nonRootFSThreads(t)
		if len(bad) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, b := range bad {
		t.Errorf("a thread kept a non-root file-system id: %s", b)
	}
	f := filepath.Join(t.TempDir(), "mine")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if u, _ := owner(t, f); u != 0 {
		t.Errorf("a file written after the deliveries is owned by %d, want root", u)
	}
}

// nonRootFSThreads lists this process's threads whose file-system uid or
// gid (the fourth Uid:/Gid: field) is not root's.
func nonRootFSThreads(t *testing.T) []string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for _, st := range tasks {
		if filepath.Base(filepath.Dir(st)) == strconv.Itoa(os.Getpid()) {
			// The main thread cannot exit: a locked goroutine that ends
			// on it leaves it wedged, never running Go code again
			// (runtime.LockOSThread), so its identity harms nothing.
			continue
		}
		b, err := os.ReadFile(st)
		if err != nil {
			continue // the thread ended meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") && f[4] != "0" {
				bad = append(bad, st+": "+line)
			}
		}
	}
	return bad
}
