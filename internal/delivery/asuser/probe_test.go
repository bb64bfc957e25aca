package asuser

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"moat/internal/delivery/maildir"
)

// TestDeliverUnlessFile: the files are read first, as the user; the job
// is done only when none exists, and otherwise the first file that is
// there (or its read's error) comes back with nothing written. Both with
// the executor and without.
func TestDeliverUnlessFile(t *testing.T) {
	cr := account(t)
	sock, _ := executor(t)
	home, fwd, rootOnly := forwardHome(t, cr)
	none1, none2 := filepath.Join(home, "none1"), filepath.Join(home, "none2")
	md := filepath.Join(home, "Maildir")
	count := func() int {
		es, _ := os.ReadDir(filepath.Join(md, "new"))
		return len(es)
	}
	opt := ReadOptions{Limit: 100}
	ctx := context.Background()
	for _, r := range []*Runner{NewRunner(moatBin, ""), NewRunner(moatBin, sock)} {
		job := Job{Kind: KindMaildir, Path: md, Maildir: maildir.Options{}}
		before := count()
		found, err := r.DeliverUnlessFile(ctx, cr, []string{none1, none2}, opt, job, strings.NewReader(testMsg))
		if err != nil || found.Index != -1 {
			t.Fatalf("no file: %+v %v", found, err)
		}
		if count() != before+1 {
			t.Fatalf("no file: %d messages, want %d", count(), before+1)
		}
		found, err = r.DeliverUnlessFile(ctx, cr, []string{none1, fwd, none2}, opt, job, strings.NewReader(testMsg))
		if err != nil || found.Index != 1 || found.Err != nil || string(found.File.Data) != "someone@example.com\n" || found.File.UID != cr.UID || found.File.Perm != 0o600 {
			t.Fatalf("file: %+v %v", found, err)
		}
		if count() != before+1 {
			t.Errorf("a file was found, but the job was done")
		}
		found, err = r.DeliverUnlessFile(ctx, cr, []string{filepath.Join(home, "link"), fwd}, opt, job, strings.NewReader(testMsg))
		if err != nil || found.Index != 0 || !errors.Is(found.Err, syscall.ELOOP) {
			t.Errorf("symbolic link: %+v %v", found, err)
		}
		found, err = r.DeliverUnlessFile(ctx, cr, []string{rootOnly}, opt, job, strings.NewReader(testMsg))
		if err != nil || found.Index != 0 || !errors.Is(found.Err, os.ErrPermission) {
			t.Errorf("unreadable file: %+v %v", found, err)
		}
		// The job's own failure comes back as Deliver's.
		found, err = r.DeliverUnlessFile(ctx, cr, []string{none1}, opt, Job{Kind: KindMaildir, Path: "/root/nope/Maildir"}, strings.NewReader(testMsg))
		if found.Index != -1 {
			t.Errorf("failed job: %+v", found)
		}
		wantDeliveryError(t, err, "4.2.0", "Permission denied")
		// And the connection kept after a found file still carries a
		// delivery.
		if err := r.Deliver(ctx, cr, job, strings.NewReader(testMsg)); err != nil {
			t.Errorf("delivery after the probes: %v", err)
		}
		if count() != before+2 {
			t.Errorf("%d messages, want %d", count(), before+2)
		}
		r.Close()
	}
	// A path the executor would not read is refused before it is asked.
	r := NewRunner(moatBin, sock)
	defer r.Close()
	found, err := r.DeliverUnlessFile(ctx, cr, []string{"relative/.forward"}, opt, Job{Kind: KindMaildir, Path: md}, strings.NewReader(testMsg))
	if !Failed(err) || found.Index != -1 {
		t.Errorf("relative path: %+v %v", found, err)
	}
}
