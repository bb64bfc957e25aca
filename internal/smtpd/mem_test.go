package smtpd

import (
	"runtime"
	"testing"
	"time"
)

// TestIdleFootprint measures what an idle session costs (heap and stack
// after the greeting): issue 3's benchmark wants under 64 KB of RSS per idle
// connection, of which the session's own share must be a fraction.
func TestIdleFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 200 connections")
	}
	h := newHarness(t, nil, nil, "")
	const n = 200
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	clients := make([]*client, 0, n)
	for i := 0; i < n; i++ {
		c := h.greeted()
		c.cmd("EHLO x", "250-")
		clients = append(clients, c)
	}
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)) / n
	t.Logf("idle session: %d bytes (heap+stack, client side included)", per)
	// Client and server ends are both in this process; the server's
	// share is what must stay small.
	if per > 48<<10 {
		t.Errorf("idle session costs %d bytes", per)
	}
	for _, c := range clients {
		c.conn.Close()
	}
}
