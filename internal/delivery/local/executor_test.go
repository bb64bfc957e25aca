package local

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/delivery/asuser"
	"moat/internal/queue"
)

// TestThroughExecutor: with the root executor's socket (as the queue
// manager, running as mail_owner, uses it), a .forward in a 0700 home is
// read as the user and the mailbox written as the user.
func TestThroughExecutor(t *testing.T) {
	f := newFixture(t, "home_mailbox = Maildir/\n", "")
	f.useExecutor(t)
	a := f.account()
	if err := os.Chmod(a.home, 0o700); err != nil {
		t.Fatal(err)
	}
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to maildir")
	files := maildirFiles(t, filepath.Join(a.home, "Maildir"))
	if len(files) != 1 {
		t.Fatalf("%d Maildir files, want 1", len(files))
	}
	writeFile(t, filepath.Join(a.home, ".forward"), "elsewhere@remote.example\n", 0o600, a.uid, a.gid)
	wantState(t, f.deliver(a.name+"+x@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")

	// No executor: the .forward is not skipped (the mailbox would get
	// what the user forwards), the recipient is deferred.
	f.agent.run = asuser.NewRunner(moatBin, filepath.Join(f.base, "none"))
	wantState(t, f.deliver(a.name+"+y@example.com"), queue.RcptDeferred, "4.3.0", "cannot read file "+a.home+"/.forward")
}

// TestThroughExecutorOneRequest: with the executor, the .forward read and
// the mailbox write go in one request; every .forward outcome that does
// not settle the recipient (none, empty, unsafe) still ends in the
// mailbox, once, under the same Maildir key, and one that redirects is
// acted on without a mailbox copy.
func TestThroughExecutorOneRequest(t *testing.T) {
	f := newFixture(t, "home_mailbox = Maildir/\n", "")
	f.useExecutor(t)
	a := f.account()
	md := filepath.Join(a.home, "Maildir")
	fwd := filepath.Join(a.home, ".forward")
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to maildir")
	if n := len(maildirFiles(t, md)); n != 1 {
		t.Fatalf("%d Maildir files, want 1", n)
	}
	// An empty .forward ("do not forward"): the mailbox, with the key
	// of the write before, so the retry of the same recipient is not a
	// second copy.
	writeFile(t, fwd, "# nothing\n", 0o600, a.uid, a.gid)
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to maildir")
	if n := len(maildirFiles(t, md)); n != 1 {
		t.Errorf("%d Maildir files after an empty .forward, want 1 (same key)", n)
	}
	// An unsafe .forward is skipped with a warning: the mailbox.
	writeFile(t, fwd, "elsewhere@remote.example\n", 0o620, a.uid, a.gid)
	if err := os.Chmod(fwd, 0o620); err != nil {
		t.Fatal(err)
	}
	wantState(t, f.deliverContent(a.name+"@example.com", testContent+"second\r\n"), queue.RcptDelivered, "2.0.0", "delivered to maildir")
	if !strings.Contains(f.logText(), "group or world writable") {
		t.Errorf("no warning for a group-writable .forward: %s", f.logText())
	}
	// A .forward that redirects: forwarded, no mailbox copy, and the
	// executor's connection is still good for the next request.
	if err := os.Chmod(fwd, 0o600); err != nil {
		t.Fatal(err)
	}
	before := len(maildirFiles(t, md))
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
	if n := len(maildirFiles(t, md)); n != before {
		t.Errorf("%d Maildir files after forwarding, want %d", n, before)
	}
	if err := os.Remove(fwd); err != nil {
		t.Fatal(err)
	}
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to maildir")
}

// TestThroughExecutorSpoolGroup: the mail spool is written with the
// spool's group as well (Debian's /var/mail, root:mail 2775); the .forward
// is read with the user's own rights only, so that case keeps the read
// and the write apart, and both still work.
func TestThroughExecutorSpoolGroup(t *testing.T) {
	f := newFixture(t, "", "")
	f.useExecutor(t)
	a := f.account()
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to mailbox")
	if !strings.Contains(readFile(t, filepath.Join(f.spool, a.name)), "hello") {
		t.Errorf("mailbox lacks the message")
	}
	writeFile(t, filepath.Join(a.home, ".forward"), "elsewhere@remote.example\n", 0o600, a.uid, a.gid)
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
}

// useExecutor starts a root executor (asuser.Serve) on a socket in the
// fixture's directory for the test's duration and makes the agent send
// its deliveries there, as the queue manager does.
func (f *fixture) useExecutor(t *testing.T) {
	t.Helper()
	sock := filepath.Join(f.base, "local")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- asuser.Serve(ctx, ln, moatBin, f.agent.d.Log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	f.agent.run = asuser.NewRunner(moatBin, sock)
}

// TestThroughExecutorStaged: through the executor a Maildir delivery is
// only staged in tmp/ when the agent answers; the result's Commit (what the
// queue manager calls after freeing the slot) commits it into new/.
func TestThroughExecutorStaged(t *testing.T) {
	f := newFixture(t, "home_mailbox = Maildir/\n", "")
	f.useExecutor(t)
	a := f.account()
	md := filepath.Join(a.home, "Maildir")
	res := f.agent.Deliver(context.Background(), f.request("sender@remote.example", testContent, a.name+"@example.com"))
	if len(res) != 1 || res[0].State != queue.RcptDelivered || res[0].Commit == nil {
		t.Fatalf("results %+v, want one delivered with a Commit", res)
	}
	tmp, err := os.ReadDir(filepath.Join(md, "tmp"))
	if err != nil || len(tmp) != 1 {
		t.Fatalf("tmp/ holds %d files (%v), want the staged one", len(tmp), err)
	}
	if n := len(maildirFiles(t, md)); n != 0 {
		t.Fatalf("%d files in new/ before the commit", n)
	}
	if err := res[0].Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(maildirFiles(t, md)); n != 1 {
		t.Errorf("%d files in new/ after the commit, want 1", n)
	}
	if tmp, _ := os.ReadDir(filepath.Join(md, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ holds %d files after the commit", len(tmp))
	}
}
