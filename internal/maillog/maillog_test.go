package maillog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// memSink records file-format lines in memory; block, when set, holds every
// Write until it is closed, to play a stuck syslogd.
type memSink struct {
	mu      sync.Mutex
	lines   []string
	fail    bool
	block   chan struct{}
	reopens int
}

func (m *memSink) Write(r *Record) error {
	if m.block != nil {
		<-m.block
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("sink failed")
	}
	m.lines = append(m.lines, string(FileLine(r, "mx")))
	return nil
}
func (m *memSink) Reopen() error { m.reopens++; return nil }
func (m *memSink) Close() error  { return nil }
func (m *memSink) got() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.lines...)
}

func fixedNow() time.Time { return time.Date(2026, time.July, 3, 11, 0, 40, 0, time.UTC) }

func newTest(t *testing.T, o Options) (*Logger, *memSink, *memSink) {
	t.Helper()
	sink, fb := &memSink{}, &memSink{}
	if o.Sink == nil {
		o.Sink = sink
	} else {
		sink = o.Sink.(*memSink)
	}
	o.Fallback = fb
	o.Now = fixedNow
	if o.PID == 0 {
		o.PID = 4516
	}
	if o.Daemon == "" {
		o.Daemon = "smtpd"
	}
	l := New(o)
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l, sink, fb
}

func flush(t *testing.T, l *Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSeverities(t *testing.T) {
	l, sink, _ := newTest(t, Options{})
	l.Info("connect from %s", "x[192.0.2.1]")
	l.Warning("hostname %s does not resolve", "x")
	l.Error("queue file write error")
	l.Verbose("not logged: logger is not verbose")
	l.WithVerbose(2).Verbose("> %s: %s", "x[192.0.2.1]", "EHLO x")
	l.Fatal("bad %s", "config")
	l.Panic("myfree: corrupt")
	l.With("cleanup", 77).Info("56FE42EB09: message-id=<a@b>")
	l.WithName("postfix/submission").Info("connect from y[::1]")
	flush(t, l)
	want := []string{
		"Jul 03 11:00:40 mx postfix/smtpd[4516]: connect from x[192.0.2.1]\n",
		"Jul 03 11:00:40 mx postfix/smtpd[4516]: warning: hostname x does not resolve\n",
		"Jul 03 11:00:40 mx postfix/smtpd[4516]: error: queue file write error\n",
		"Jul 03 11:00:40 mx postfix/smtpd[4516]: > x[192.0.2.1]: EHLO x\n",
		"Jul 03 11:00:40 mx postfix/smtpd[4516]: fatal: bad config\n",
		"Jul 03 11:00:40 mx postfix/smtpd[4516]: panic: myfree: corrupt\n",
		"Jul 03 11:00:40 mx postfix/cleanup[77]: 56FE42EB09: message-id=<a@b>\n",
		"Jul 03 11:00:40 mx postfix/submission/smtpd[4516]: connect from y[::1]\n",
	}
	got := sink.got()
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, ""), strings.Join(want, ""))
	}
}

// A percent sign in a text with no arguments is not a directive: callers
// may log client-supplied text with Info(text).
func TestNoArgsVerbatim(t *testing.T) {
	l, sink, _ := newTest(t, Options{})
	l.Info("100%s done")
	flush(t, l)
	if got := sink.got(); len(got) != 1 || !strings.HasSuffix(got[0], ": 100%s done\n") {
		t.Errorf("got %q", got)
	}
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		utf8 bool
		want string
	}{
		{"plain text", false, "plain text"},
		{"a\r\nfake: line", false, "a??fake: line"},
		{"tab\there", false, "tab?here"},
		{"esc\x1b[31m", true, "esc?[31m"},
		{"del\x7f", true, "del?"},
		{"caf\xc3\xa9", false, "caf??"},
		{"caf\xc3\xa9", true, "caf\xc3\xa9"},
		{"bad\xff\xc3", true, "bad??"},
		{"c1\xc2\x9b", true, "c1??"},
	} {
		if got := Printable(tc.in, tc.utf8); got != tc.want {
			t.Errorf("Printable(%q, %v) = %q, want %q", tc.in, tc.utf8, got, tc.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	l, sink, _ := newTest(t, Options{UTF8: true})
	l.Info("%s", strings.Repeat("x", 3000))
	l.Info("%s", strings.Repeat("x", MaxText-1)+"é")
	flush(t, l)
	got := sink.got()
	prefix := "Jul 03 11:00:40 mx postfix/smtpd[4516]: "
	if want := prefix + strings.Repeat("x", MaxText) + "\n"; got[0] != want {
		t.Errorf("long text not cut at %d bytes: len %d", MaxText, len(got[0]))
	}
	if want := prefix + strings.Repeat("x", MaxText-1) + "\n"; got[1] != want {
		t.Errorf("cut splits a UTF-8 character: %q", got[1][len(got[1])-5:])
	}
}

// A stuck sink must not block callers: with a queue of 4, the fifth and
// later records are dropped, counted, and announced when the sink recovers.
func TestDropsCountedAndReported(t *testing.T) {
	stuck := &memSink{block: make(chan struct{})}
	l, sink, _ := newTest(t, Options{Sink: stuck, QueueSize: 4})
	l.Info("first") // taken by the writer, which then blocks in Write
	deadline := time.Now().Add(5 * time.Second)
	for len(l.c.queue) != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	for i := range 20 {
		l.Info("record %d", i)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("logging blocked for %v behind a stuck sink", d)
	}
	if st := l.Stats(); st.Dropped != 16 {
		t.Errorf("Dropped = %d, want 16", st.Dropped)
	}
	close(stuck.block)
	flush(t, l)
	got := sink.got()
	if len(got) != 6 {
		t.Fatalf("got %d lines, want 6:\n%s", len(got), strings.Join(got, ""))
	}
	want := "Jul 03 11:00:40 mx postfix/smtpd[4516]: warning: maillog: 16 log records dropped: the log sink is too slow or failing\n"
	if got[1] != want {
		t.Errorf("drop notice = %q, want %q", got[1], want)
	}
	if got[2] != "Jul 03 11:00:40 mx postfix/smtpd[4516]: record 0\n" {
		t.Errorf("after notice: %q", got[2])
	}
}

func TestFallbackOnSinkFailure(t *testing.T) {
	failing := &memSink{fail: true}
	l, _, fb := newTest(t, Options{Sink: failing})
	l.Info("connect from x[192.0.2.1]")
	flush(t, l)
	if got := fb.got(); len(got) != 1 || !strings.Contains(got[0], "connect from x[192.0.2.1]") {
		t.Errorf("fallback got %q", got)
	}
	if st := l.Stats(); st.Fallback != 1 || st.Lost != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestAfterClose(t *testing.T) {
	l, sink, fb := newTest(t, Options{})
	l.Info("before")
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.Info("after")
	l.Fatal("fatal after")
	if got := sink.got(); len(got) != 1 {
		t.Errorf("sink got %q", got)
	}
	if got := fb.got(); len(got) != 2 {
		t.Errorf("fallback got %q", got)
	}
	if err := l.Flush(context.Background()); err == nil {
		t.Error("Flush after Close succeeded")
	}
}

// Many sessions log at once; with room in the queue nothing is lost and
// each session's records keep their order.
func TestConcurrent(t *testing.T) {
	l, sink, _ := newTest(t, Options{QueueSize: 1 << 14})
	const sessions, each = 50, 100
	var wg sync.WaitGroup
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sl := l.With("smtpd", 1000+s)
			for i := range each {
				sl.Info("n=%d", i)
			}
		}()
	}
	wg.Wait()
	flush(t, l)
	got := sink.got()
	if len(got)+int(l.Stats().Dropped) != sessions*each || l.Stats().Dropped != 0 {
		t.Fatalf("got %d lines, dropped %d", len(got), l.Stats().Dropped)
	}
	next := map[string]int{}
	for _, line := range got {
		i := strings.Index(line, "smtpd[")
		j := strings.Index(line, "]: n=")
		pid := line[i:j]
		var n int
		fmt.Sscanf(line[j+5:], "%d", &n)
		if n != next[pid] {
			t.Fatalf("%s: record %d out of order (want %d)", pid, n, next[pid])
		}
		next[pid]++
	}
}

func TestReopenCallsSink(t *testing.T) {
	l, sink, _ := newTest(t, Options{})
	if err := l.Reopen(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sink.reopens != 1 {
		t.Errorf("reopens = %d", sink.reopens)
	}
}

type discardSink struct{}

func (discardSink) Write(r *Record) error {
	_ = FileLine(r, "mx")
	return nil
}
func (discardSink) Reopen() error { return nil }
func (discardSink) Close() error  { return nil }

// BenchmarkInfoParallel measures the cost a session pays per record,
// formatting through the file-format line, with many goroutines logging.
func BenchmarkInfoParallel(b *testing.B) {
	l := New(Options{Sink: discardSink{}, Fallback: discardSink{}, QueueSize: 1 << 16})
	defer l.Close(context.Background())
	c := client("mail.example.org", "192.0.2.25")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Info("%s", Connect(c))
		}
	})
	b.ReportMetric(float64(l.Stats().Dropped), "dropped")
}
