package main

import (
	"bytes"
	"strings"
	"testing"
)

const rawSample = `# bench/run raw results
server=plan mode=store point=1k-s1
server=plan mode=store point=1k-s200
server=postfix mode=store point=1k-s1 sessions=1 count=5000 size=1024 load=3.5 rc=0 wall=50.000 done=51.000 cpu_accept=9.00 cpu_done=10.00 peak_rss_kb=20480 procs=20 delivered=5000 queued=0
server=moat mode=store point=1k-s1 sessions=1 count=5000 size=1024 rc=0 wall=25.000 done=25.500 cpu_accept=4.00 cpu_done=5.00 peak_rss_kb=10240 procs=1 delivered=4999 queued=0
server=postfix mode=discard point=1k-s1 sessions=1 count=5000 size=1024 load=1.25 rc=0 wall=40.000 done=40.100 cpu_accept=8.00 cpu_done=8.00 peak_rss_kb=20480 procs=20 delivered=0 queued=0
server=postfix mode=deliver-maildir point=1k-held sessions=10 count=5000 size=1024 load=1.0 rc=0 wall=0.500 done=10.000 cpu_accept=0.10 cpu_done=20.00 peak_rss_kb=102400 procs=30 delivered=5000 queued=0
server=moat mode=deliver-maildir point=1k-held sessions=10 count=5000 size=1024 load=1.5 rc=0 wall=0.250 done=20.000 cpu_accept=0.10 cpu_done=40.00 peak_rss_kb=51200 procs=6 delivered=5000 queued=0
server=postfix mode=deliver-lmtp point=1k-held sessions=10 count=5000 size=1024 load=1.0 rc=1 wall=0.100 done=300.000 cpu_accept=0.10 cpu_done=1.00 peak_rss_kb=102400 procs=30 delivered=0 queued=5000
server=moat mode=deliver-lmtp point=1k-held sessions=10 count=5000 size=1024 load=1.0 rc=0 wall=0.100 done=0 cpu_accept=0.10 cpu_done=1.00 peak_rss_kb=102400 procs=30 delivered=5000 queued=0
server=postfix mode=idle point=idle n=1000 greeted=1000 open_s=3.00 procs_before=10 procs_after=1010 rss_before_kb=1 rss_after_kb=2 pss_before_kb=1 pss_after_kb=2 rss_per_conn_kb=5000.0 pss_per_conn_kb=700.0
`

func TestReportTables(t *testing.T) {
	recs, err := readRecords(strings.NewReader(rawSample))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeTables(&out, recs)
	got := out.String()
	for _, want := range []string{
		// 100 vs 200 msg/s, 2.00 vs 1.00 CPU s/1000, 20 vs 10 MB.
		"| 1k-s1 | 100 | 200 | 2.00 | 2.00 | 1.00 | 0.50 | 20 | 10 | 0.50 | 51.0 | 25.5 | 5000/5000 stored | 4999/5000 delivered |",
		"| 1k-s1 | 125 | pending | – | 1.60 | pending | – |",
		"| postfix | 1000/1000 | 10 → 1010 | 5000.0 | 700.0 |",
		"| moat | pending | pending | pending | pending |",
		// Delivery modes: msg/s is count/done (500 vs 250), not count/wall.
		"### deliver-maildir: release held messages, local(8) delivers to one Maildir (msg/s = delivery rate)",
		"| 1k-held | 500 | 250 | 0.50 | 4.00 | 8.00 | 2.00 | 100 | 50 | 0.50 | 10.0 | 20.0 | 5000/5000 stored | 5000/5000 stored |",
		// A failed release, and a run without a delivery time.
		"| 1k-held | 17 | error | – |",
		"release rc=1, 5000 left in queue, 0/5000 delivered | 5000/5000 stored |",
		"Load average (1 min) before the points: postfix 1.0–3.5, moat 1.0–1.5.",
		// Planned but never run by either server.
		"| 1k-s200 | pending | pending | – |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks\n%s\nin\n%s", want, got)
		}
	}
}

// Without an idle record (BENCH_IDLE=0) there is no idle table at all.
func TestReportNoIdle(t *testing.T) {
	recs, err := readRecords(strings.NewReader("server=plan mode=deliver-lmtp point=1k-held\n"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeTables(&out, recs)
	if got := out.String(); strings.Contains(got, "idle connections") || !strings.Contains(got, "| 1k-held | pending | pending | – |") {
		t.Errorf("report:\n%s", got)
	}
}

func TestParseRecordErrors(t *testing.T) {
	for _, line := range []string{"a=1 b", "=1", "a=1 a=2", ""} {
		if _, err := parseRecord(line); err == nil {
			t.Errorf("parseRecord(%q): no error", line)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, l := range strings.Split(rawSample, "\n") {
		f.Add(l)
	}
	f.Add("a==b c=")
	f.Fuzz(func(t *testing.T, line string) {
		r, err := parseRecord(line)
		if err != nil {
			return
		}
		var out bytes.Buffer
		writeTables(&out, []record{r}) // must not panic on any values
		for k := range r {
			if !strings.Contains(line, k+"=") {
				t.Errorf("key %q not in %q", k, line)
			}
		}
	})
}
