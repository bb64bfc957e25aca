package queue

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestBatch checks the batch's moves and removals: the same refusals as
// Queue.Move (a missing source is fs.ErrNotExist even when the target
// exists, an existing target is never replaced) and every change in place
// after Sync, with hashed and flat queues.
func TestBatch(t *testing.T) {
	q := newQueue(t, Options{HashQueues: []string{Deferred}, HashDepth: 1})
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, commit(t, q, testEnvelope(), "x\r\n"))
	}
	b := q.NewBatch()
	for _, id := range ids[:3] {
		if err := b.Move(id, Incoming, Hold); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Move(ids[0], Hold, Deferred); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(Incoming, ids[3]); err != nil {
		t.Fatal(err)
	}
	// Missing source, with and without a target of that ID.
	if err := b.Move(ids[3], Incoming, Hold); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("move of a removed message: %v", err)
	}
	if err := b.Move(ids[1], Incoming, Hold); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("move from a queue it left: %v", err)
	}
	// An existing target is refused and both copies stay.
	dup := filepath.Join(q.Dir(), q.leaf(Deferred, ids[2]), ids[2])
	if err := os.Link(filepath.Join(q.Dir(), Hold, ids[2]), dup); err != nil {
		t.Fatal(err)
	}
	if err := b.Move(ids[2], Hold, Deferred); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("move onto an existing message: %v", err)
	}
	os.Remove(dup)
	if err := b.Remove(Hold, ids[3]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("remove of a missing message: %v", err)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(b.dirty) != 0 {
		t.Errorf("directories left unsynced: %d", len(b.dirty))
	}
	want := map[string][]string{Incoming: {ids[4]}, Hold: {ids[1], ids[2]}, Deferred: {ids[0]}}
	for name, w := range want {
		got, err := q.List(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(w) {
			t.Errorf("%s: %v, want %v", name, got, w)
			continue
		}
		for i := range w {
			if got[i] != w[i] {
				t.Errorf("%s: %v, want %v", name, got, w)
			}
		}
	}
}
