package local

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"moat/internal/delivery/asuser"
	"moat/internal/queue"
)

// TestThroughExecutor: with the root executor's socket (as the queue
// manager, running as mail_owner, uses it), a .forward in a 0700 home is
// read as the user and the mailbox written as the user.
func TestThroughExecutor(t *testing.T) {
	f := newFixture(t, "home_mailbox = Maildir/\n", "")
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
