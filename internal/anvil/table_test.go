package anvil

import (
	"fmt"
	"regexp"
	"runtime"
	"sync"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 22, 19, 47, 1, 0, time.Local)} }

func TestConnectCountAndRate(t *testing.T) {
	ck := newClock()
	tb := NewTable(Options{Unit: time.Minute, Now: ck.now})
	for i := 1; i <= 3; i++ {
		n, r, err := tb.Connect("smtp", "192.0.2.1")
		if err != nil || n != i || r != i {
			t.Fatalf("connect %d: count %d rate %d err %v", i, n, r, err)
		}
	}
	// Another service and another address count apart.
	if n, r, _ := tb.Connect("submission", "192.0.2.1"); n != 1 || r != 1 {
		t.Fatalf("other service: %d %d", n, r)
	}
	if n, r, _ := tb.Connect("smtp", "192.0.2.2"); n != 1 || r != 1 {
		t.Fatalf("other address: %d %d", n, r)
	}
	if err := tb.Disconnect("smtp", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if n, r, _ := tb.Connect("smtp", "192.0.2.1"); n != 3 || r != 4 {
		t.Fatalf("after disconnect: count %d rate %d, want 3 4", n, r)
	}
	// A new window restarts every rate but not the connection count.
	ck.add(time.Minute)
	if n, r, _ := tb.Connect("smtp", "192.0.2.1"); n != 4 || r != 1 {
		t.Fatalf("new window: count %d rate %d, want 4 1", n, r)
	}
	// Disconnects never go below zero, and unknown clients are ignored.
	for range 10 {
		_ = tb.Disconnect("smtp", "192.0.2.1")
	}
	_ = tb.Disconnect("smtp", "198.51.100.9")
	if n, _, _ := tb.Connect("smtp", "192.0.2.1"); n != 1 {
		t.Fatalf("count after extra disconnects: %d", n)
	}
}

func TestRatesShareWindow(t *testing.T) {
	ck := newClock()
	tb := NewTable(Options{Unit: 10 * time.Second, Now: ck.now})
	for i := 1; i <= 5; i++ {
		if r, _ := tb.Mail("smtp", "a"); r != i {
			t.Fatalf("mail %d: rate %d", i, r)
		}
	}
	for i := 1; i <= 7; i++ {
		if r, _ := tb.Rcpt("smtp", "a"); r != i {
			t.Fatalf("rcpt %d: rate %d", i, r)
		}
	}
	if r, _ := tb.NewTLSStatus("smtp", "a"); r != 0 {
		t.Fatalf("newtls status before any: %d", r)
	}
	if r, _ := tb.NewTLS("smtp", "a"); r != 1 {
		t.Fatalf("newtls %d", r)
	}
	for range 3 {
		if r, _ := tb.NewTLSStatus("smtp", "a"); r != 1 {
			t.Fatalf("newtls status counted: %d", r)
		}
	}
	if r, _ := tb.NewTLSStatus("smtp", "unknown"); r != 0 || tb.Len() != 1 {
		t.Fatalf("status of an unknown client: %d, %d entries", r, tb.Len())
	}
	if r, _ := tb.Auth("smtp", "a"); r != 1 {
		t.Fatalf("auth %d", r)
	}
	ck.add(9 * time.Second)
	if r, _ := tb.Mail("smtp", "a"); r != 6 {
		t.Fatalf("same window: %d", r)
	}
	ck.add(time.Second)
	if r, _ := tb.Rcpt("smtp", "a"); r != 1 {
		t.Fatalf("rcpt in new window: %d", r)
	}
	if r, _ := tb.Mail("smtp", "a"); r != 1 {
		t.Fatalf("mail in new window: %d", r)
	}
}

func TestExpiry(t *testing.T) {
	ck := newClock()
	tb := NewTable(Options{Unit: time.Minute, Now: ck.now})
	tb.Connect("smtp", "held")
	tb.Connect("smtp", "gone")
	tb.Disconnect("smtp", "gone")
	tb.Mail("smtp", "mailer")
	ck.add(30 * time.Second)
	tb.Expire()
	if n := tb.Len(); n != 3 {
		t.Fatalf("before the unit: %d entries", n)
	}
	ck.add(31 * time.Second)
	// "held" is the coldest entry but still has a connection: it stays,
	// and the walk goes on past it.
	tb.Expire()
	if n := tb.Len(); n != 1 {
		t.Fatalf("after the unit: %d entries, want only the one holding a connection", n)
	}
	tb.Disconnect("smtp", "held")
	ck.add(time.Minute)
	tb.Expire()
	if n := tb.Len(); n != 0 {
		t.Fatalf("after its disconnect: %d entries", n)
	}
}

// TestFloodBounded drives 100,000 distinct client addresses through the
// table: the entry count never passes the cap and the heap stays within
// what the cap's entries need.
func TestFloodBounded(t *testing.T) {
	const capN, flood = 5000, 100_000
	ck := newClock()
	tb := NewTable(Options{Unit: time.Minute, MaxEntries: capN, Now: ck.now})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range flood {
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		if _, _, err := tb.Connect("smtp", addr); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			tb.Disconnect("smtp", addr)
		}
		if n := tb.Len(); n > capN {
			t.Fatalf("after %d addresses: %d entries > cap %d", i+1, n, capN)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d addresses: %d entries, %d evicted, heap growth %d bytes (%d per cap entry)",
		flood, tb.Len(), tb.Evicted(), growth, growth/capN)
	if tb.Len() != capN || tb.Evicted() != flood-capN {
		t.Fatalf("entries %d evicted %d", tb.Len(), tb.Evicted())
	}
	// An entry is a map slot, a list element and ~100 bytes of counters
	// and key; 1 KB each is a generous bound, far below what 100,000
	// entries would take.
	if growth > capN*1024 {
		t.Fatalf("heap grew %d bytes for %d entries", growth, capN)
	}
	// Once the unit passes, idle entries go without new events.
	ck.add(time.Minute)
	tb.Expire()
	t.Logf("after a unit: %d entries (held connections remain)", tb.Len())
	runtime.KeepAlive(tb)
}

// TestFloodExpiresIdle shows that within the cap, idle entries leave at the
// cold end as new ones arrive, so a slow trickle of distinct addresses never
// reaches the cap.
func TestFloodExpiresIdle(t *testing.T) {
	ck := newClock()
	tb := NewTable(Options{Unit: time.Second, MaxEntries: 1000, Now: ck.now})
	for i := range 10_000 {
		addr := fmt.Sprint("192.0.2.", i)
		tb.Connect("smtp", addr)
		tb.Disconnect("smtp", addr)
		ck.add(10 * time.Millisecond)
	}
	if n := tb.Len(); n > 202 {
		t.Fatalf("%d entries; want about one unit's worth (100)", n)
	}
	if tb.Evicted() != 0 {
		t.Fatalf("%d evicted; expiry should have kept up", tb.Evicted())
	}
}

var statRE = regexp.MustCompile(`^statistics: max (connection|message|recipient|newtls|auth) rate \d+/\d+s for \([^)]+\) at [A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d$|^statistics: max connection count \d+ for \([^)]+\) at [A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d$|^statistics: max cache size \d+ at [A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d$`)

func TestStatistics(t *testing.T) {
	ck := newClock()
	tb := NewTable(Options{Unit: time.Minute, Now: ck.now})
	if l := tb.Statistics(); len(l) != 0 {
		t.Fatalf("empty table: %q", l)
	}
	tb.Connect("smtp", "192.0.2.1")
	tb.Connect("smtp", "192.0.2.1")
	tb.Connect("smtp", "192.0.2.2")
	tb.Mail("smtp", "192.0.2.2")
	tb.Rcpt("smtp", "192.0.2.2")
	tb.Rcpt("smtp", "192.0.2.2")
	got := tb.Statistics()
	want := []string{
		"statistics: max connection rate 2/60s for (smtp:192.0.2.1) at Nov 22 19:47:01",
		"statistics: max connection count 2 for (smtp:192.0.2.1) at Nov 22 19:47:01",
		"statistics: max message rate 1/60s for (smtp:192.0.2.2) at Nov 22 19:47:01",
		"statistics: max recipient rate 2/60s for (smtp:192.0.2.2) at Nov 22 19:47:01",
		"statistics: max cache size 2 at Nov 22 19:47:01",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	for _, l := range got {
		if !statRE.MatchString(l) {
			t.Errorf("not anvil(8)'s form: %q", l)
		}
	}
	// Maxima reset after each dump.
	ck.add(time.Second)
	tb.Auth("smtp", "192.0.2.3")
	tb.NewTLS("smtp", "192.0.2.3")
	got = tb.Statistics()
	want = []string{
		"statistics: max newtls rate 1/60s for (smtp:192.0.2.3) at Nov 22 19:47:02",
		"statistics: max auth rate 1/60s for (smtp:192.0.2.3) at Nov 22 19:47:02",
		"statistics: max cache size 3 at Nov 22 19:47:02",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("second dump\n%q\nwant\n%q", got, want)
	}
}

func TestConcurrentUse(t *testing.T) {
	tb := NewTable(Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				a := fmt.Sprint("198.51.100.", (g*500+i)%50)
				tb.Connect("smtp", a)
				tb.Rcpt("smtp", a)
				tb.Disconnect("smtp", a)
			}
		}()
	}
	wg.Wait()
	for i := range 50 {
		if n, _, _ := tb.Connect("smtp", fmt.Sprint("198.51.100.", i)); n != 1 {
			t.Fatalf("address %d: count %d after balanced connects", i, n)
		}
	}
}
