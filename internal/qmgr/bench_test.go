package qmgr

import (
	"testing"
	"time"
)

// BenchmarkDeliverLocal measures Maildir delivery throughput: b.N messages
// of about 1 KB, queued beforehand, delivered to one local user (issue 5's
// delivery benchmark compares this path with Postfix's local(8)). Run on
// demand: go test -run '^$' -bench DeliverLocal -benchtime 500x ./internal/qmgr
func BenchmarkDeliverLocal(b *testing.B) {
	e := newEnv(b, "")
	body := make([]byte, 0, 1024)
	for len(body) < 1000 {
		body = append(body, "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"...)
	}
	for range b.N {
		e.putContent("s@example.org", "Subject: bench\r\n\r\n"+string(body), "rita@mx.test")
	}
	b.ResetTimer()
	e.start()
	e.waitFor("all deliveries", time.Duration(b.N)*time.Second+10*time.Second, func() bool {
		return e.count("rita") == b.N
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
