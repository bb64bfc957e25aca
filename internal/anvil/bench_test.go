package anvil

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkClientParallel measures requests through one shared client, as
// the sessions of one smtpd process make them.
func BenchmarkClientParallel(b *testing.B) {
	sv := startService(b, b.TempDir(), NewTable(Options{}), time.Hour)
	c := NewClient(sv.path)
	defer c.Close()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := c.Rcpt("smtp", fmt.Sprint("192.0.2.", i%200)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkTable measures the counting core alone.
func BenchmarkTable(b *testing.B) {
	tb := NewTable(Options{})
	for i := 0; i < b.N; i++ {
		tb.Connect("smtp", "192.0.2.1")
		tb.Disconnect("smtp", "192.0.2.1")
	}
}
