package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkCommit commits 1 KB messages from 1, 10, 50 and 200 goroutines,
// with group commit of directory fsyncs and without (each commit fsyncs
// incoming/ alone). It reports messages per second; run it on the file
// system the queue will live on: under $MOAT_QUEUE_BENCH_DIR if set, else
// t.TempDir (under $TMPDIR).
//
//	go test -run '^$' -bench Commit -benchtime 2000x ./internal/queue
func BenchmarkCommit(b *testing.B) {
	content := strings.Repeat("0123456789abcdef0123456789abcdef\r\n", 31)[:1024]
	for _, mode := range []string{"group", "solo"} {
		for _, g := range []int{1, 10, 50, 200} {
			b.Run(fmt.Sprintf("%s/g=%d", mode, g), func(b *testing.B) {
				opts := Options{Create: true, NoGroupCommit: mode == "solo"}
				dir := b.TempDir()
				if d := os.Getenv("MOAT_QUEUE_BENCH_DIR"); d != "" {
					var err error
					if dir, err = os.MkdirTemp(d, "bench"); err != nil {
						b.Fatal(err)
					}
					defer os.RemoveAll(dir)
				}
				q, err := Open(filepath.Join(dir, "spool"), opts)
				if err != nil {
					b.Fatal(err)
				}
				env := testEnvelope()
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for i := 0; i < g; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							w, err := q.NewMessage()
							if err != nil {
								b.Error(err)
								return
							}
							w.Envelope = env
							w.WriteString(content)
							if _, err := w.Commit(); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				b.ReportMetric(float64(q.syncer[Incoming].started)/float64(b.N), "dirsyncs/msg")
			})
		}
	}
}
