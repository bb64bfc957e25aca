package queue

import (
	"sort"
	"testing"
	"time"
)

func TestIDManPageExample(t *testing.T) {
	// postconf(5), enable_long_queue_ids, gives 3Pt2mN2VXxznjll.
	const id = "3Pt2mN2VXxznjll"
	tm, ino, err := ParseID(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := MakeID(tm, ino); got != id {
		t.Fatalf("MakeID(ParseID(%q)) = %q", id, got)
	}
	if tm.Year() < 2010 || tm.Year() > 2030 {
		t.Errorf("time %v: implausible", tm)
	}
}

func TestIDRoundTripAndOrder(t *testing.T) {
	base := time.Date(2026, 11, 22, 17, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < 2000; i++ {
		tm := base.Add(time.Duration(i*i) * time.Microsecond * 37)
		ino := uint64(i*7919 + i*i*104729)
		id := MakeID(tm, ino)
		gt, gi, err := ParseID(id)
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if !gt.Equal(tm) || gi != ino {
			t.Fatalf("%q: got %v %d, want %v %d", id, gt, gi, tm, ino)
		}
		for j := 0; j < len(id); j++ {
			if c := id[j]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
				t.Fatalf("%q: character %q unsafe in a file name", id, c)
			}
		}
		ids = append(ids, id)
	}
	if !sort.StringsAreSorted(ids) {
		t.Error("IDs made in time order do not sort in time order")
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, id := range []string{"", "z", "tmp.1.2", "3Pt2mN2VXxznjlz", "3Pt2mN2VXx", "3Pt2mN2VXxz",
		"03Pt2mN2VXxznjll", "3Pt2mN2VXxznjlA", "../../etc/passwd", "3Pt2mN2zzzzznjll"} {
		if ValidID(id) {
			t.Errorf("ValidID(%q) = true", id)
		}
	}
}

func FuzzParseID(f *testing.F) {
	f.Add("3Pt2mN2VXxznjll")
	f.Add("0000000000z0")
	f.Add("zzzzzzzzzzzzzzzzzzzzzz")
	f.Fuzz(func(t *testing.T, id string) {
		tm, ino, err := ParseID(id)
		if err != nil {
			return
		}
		if MakeID(tm, ino) != id {
			t.Fatalf("%q accepted but not canonical", id)
		}
	})
}
