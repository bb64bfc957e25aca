package queue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHashedQueue(t *testing.T) {
	q := newQueue(t, Options{HashQueues: []string{Deferred, "defer"}, HashDepth: 2})
	for _, d := range []string{"deferred/0/F", "deferred/A"} {
		st, err := os.Stat(filepath.Join(q.Dir(), d))
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", d, st, err)
		}
	}
	var ids []string
	for i := 0; i < 20; i++ {
		id := commit(t, q, testEnvelope(), "x")
		if err := q.Move(id, Incoming, Deferred); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	p, _ := q.path(Deferred, ids[0])
	if rel := strings.TrimPrefix(p, q.Dir()+"/"); strings.Count(rel, "/") != 3 {
		t.Errorf("path %s: want deferred/X/Y/ID", rel)
	}
	list, err := q.List(Deferred)
	if err != nil || strings.Join(list, " ") != strings.Join(ids, " ") {
		t.Fatalf("List = %v, %v", list, err)
	}
	if name, err := q.Find(ids[3]); err != nil || name != Deferred {
		t.Errorf("Find = %q %v", name, err)
	}
	if err := q.UpdateRecipients(Deferred, ids[3], []RecipientUpdate{{Index: 0, State: RcptDelivered}}); err != nil {
		t.Fatal(err)
	}
	if err := q.Move(ids[3], Deferred, Active); err != nil {
		t.Fatal(err)
	}
	if err := q.Remove(Active, ids[3]); err != nil {
		t.Fatal(err)
	}
	if err := q.Remove(Deferred, ids[4]); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(q.Dir(), Options{HashQueues: []string{Deferred}, HashDepth: 9}); err == nil {
		t.Error("depth 9 accepted")
	}
}

// TestRehash changes hash_queue_depth between runs: Recover moves every
// message to the directory the new setting gives it.
func TestRehash(t *testing.T) {
	q := newQueue(t, Options{})
	var ids []string
	for i := 0; i < 10; i++ {
		id := commit(t, q, testEnvelope(), "x")
		q.Move(id, Incoming, Deferred)
		ids = append(ids, id)
	}
	for _, depth := range []int{1, 2, 0} {
		q2, err := Open(q.Dir(), Options{Create: true, HashQueues: []string{Deferred}, HashDepth: depth})
		if err != nil {
			t.Fatal(err)
		}
		st, err := q2.Recover(false)
		if err != nil {
			t.Fatal(err)
		}
		if st.Rehashed != 10 || st.Kept != 10 || st.Corrupt != 0 {
			t.Errorf("depth %d: %+v", depth, st)
		}
		list, _ := q2.List(Deferred)
		if strings.Join(list, " ") != strings.Join(ids, " ") {
			t.Errorf("depth %d: List = %v", depth, list)
		}
	}
	// A directory that is not a hash level is not the queue's.
	os.Mkdir(filepath.Join(q.Dir(), Deferred, "junk"), 0o700)
	st, err := q.Recover(false)
	if err != nil || st.Corrupt != 1 {
		t.Errorf("junk directory: %+v %v", st, err)
	}
}
