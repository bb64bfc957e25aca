package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSinkCount(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		err  bool
	}{
		{"", 0, false},
		{"sess=1 quit=1 mesg=1\r", 1, false},
		{"sess=6 quit=6 mesg=6\rsess=6 quit=6 mesg=7\rsess=7 quit=7 mesg=7\r", 7, false},
		{"sess=6 quit=6 mesg=6\rsess=7 quit=7 mesg=", 6, false}, // cut mid-write
		{"mesg=12", 12, false},
		{"mesg=x\r", 0, true},
		{"mesg=12345678901\r", 0, true},
	} {
		got, err := parseSinkCount([]byte(c.in))
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("parseSinkCount(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.err)
		}
	}
}

// TestSinkCountRealSink runs Postfix's smtp-sink -c and smtp-source (both
// from Debian's postfix package) for three messages and reads the count
// from the sink's output as bench/relay does.
func TestSinkCountRealSink(t *testing.T) {
	for _, p := range []string{"/usr/sbin/smtp-sink", "/usr/sbin/smtp-source"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s: %v", p, err)
		}
	}
	var port bytes.Buffer
	if err := freePorts([]string{"-addrs", "127.0.0.1"}, &port); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strings.TrimSpace(port.String())
	out := filepath.Join(t.TempDir(), "sink.out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sink := exec.Command("/usr/sbin/smtp-sink", "-u", "nobody", "-c", addr, "16")
	sink.Stdout, sink.Stderr = f, f
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sink.Process.Kill(); _ = sink.Wait() }()
	var werr error
	for range 50 {
		if werr = exec.Command("/usr/sbin/smtp-source", "-m", "3", "-t", "a@d1.bench.test", addr).Run(); werr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if werr != nil {
		t.Fatalf("smtp-source: %v", werr)
	}
	n := 0
	for range 50 {
		if n, err = sinkCount(out); err != nil || n == 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || n != 3 {
		t.Errorf("sinkCount = %d, %v; want 3", n, err)
	}
}

func TestRelayMeasureWaitsForSinks(t *testing.T) {
	dir := t.TempDir()
	s1, s2 := filepath.Join(dir, "s1"), filepath.Join(dir, "s2")
	if err := os.WriteFile(s1, []byte("sess=1 quit=1 mesg=1\r"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s2, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The "generator" returns at once; the sinks receive the messages a
	// little later, as from a queue manager.
	script := "(sleep 0.3; printf 'sess=3 quit=3 mesg=3\\r' >>" + s1 + "; printf 'mesg=2\\r' >>" + s2 + ") &"
	var out bytes.Buffer
	err := relayMeasure([]string{"-pid", itoa(os.Getpid()), "-sinks", s1 + "," + s2, "-sent", "4",
		"-queue", dir, "-done-timeout", "10s", "--", "sh", "-c", script}, &out)
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"rc=0 ", " received=4 ", " queued=0 ", " per_sink=2,2\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
}

func TestRelayReport(t *testing.T) {
	raw := `# bench/relay raw
server=postfix sessions=10 domains=1 rep=1 count=5000 size=1024 load=1.5 rc=0 wall=5.000 done=10.000 cpu_accept=5.00 cpu_done=10.00 peak_rss_kb=102400 procs=30 received=5000 queued=0 per_sink=5000
server=moat sessions=10 domains=1 rep=1 count=5000 size=1024 load=2.0 rc=0 wall=4.000 done=5.000 cpu_accept=3.00 cpu_done=5.00 peak_rss_kb=51200 procs=5 received=5000 queued=0 per_sink=5000
server=postfix sessions=50 domains=10 rep=1 count=5000 size=1024 load=1.0 rc=124 wall=300.000 done=600.000 cpu_accept=5.00 cpu_done=10.00 peak_rss_kb=102400 procs=30 received=10 queued=4990 per_sink=1,1,1,1,1,1,1,1,1,1
`
	recs, err := readRecords(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeRelayTable(&out, recs)
	got := out.String()
	for _, want := range []string{
		"| 10 | 1 | 1 | 1.5 / 2.0 | 500 | 1000 | **2.00** | 2.00 | 1.00 | **0.50** | 100 / 50 | 10.000 / 5.000 | 5000/5000 received, 0 queued | 5000/5000 received, 0 queued |",
		"| 50 | 10 | 1 | 1.0 / – | – | pending | – | 2.00 | pending | – | 100 / – | 600.000 / – | rc=124 | pending |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks\n%s\ngot:\n%s", want, got)
		}
	}
}

func FuzzParseSinkCount(f *testing.F) {
	for _, s := range []string{"", "sess=1 quit=1 mesg=1\r", "mesg=", "mesg=99\rmesg=", "mesg=x", "mesg=0000000000001"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parseSinkCount(b)
		if err == nil && n < 0 {
			t.Fatalf("negative count %d", n)
		}
		if err == nil && !bytes.Contains(b, []byte("mesg=")) && n != 0 {
			t.Fatalf("count %d without a counter", n)
		}
	})
}
