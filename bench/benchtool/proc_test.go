package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseStatSelf(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc:", err)
	}
	s, err := parseStat(b)
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.PPID != os.Getppid() {
		t.Errorf("pid/ppid = %d/%d, want %d/%d", s.PID, s.PPID, os.Getpid(), os.Getppid())
	}
	if s.RSSPages <= 0 {
		t.Errorf("rss = %d pages", s.RSSPages)
	}
}

// A command name may hold spaces and parentheses (prctl PR_SET_NAME); the
// fields must be counted from the last ")".
func TestParseStatOddComm(t *testing.T) {
	line := "4242 (a) b (c)) S 7 4242 4242 0 -1 4194560 100 0 0 0 11 22 33 44 20 0 1 0 5 1000 9 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n"
	s, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{PID: 4242, PPID: 7, UTime: 11, STime: 22, CUTime: 33, CSTime: 44, RSSPages: 9}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
}

func TestParseStatErrors(t *testing.T) {
	for _, line := range []string{
		"",
		"12 comm S 1",
		"x (c) S 1 1 1 0 -1 0 0 0 0 0 1 1 1 1 20 0 1 0 5 1 9",
		"12 (c) S 1 1 1",
		"12 (c) S 1 1 1 0 -1 0 0 0 0 0 -1 1 1 1 20 0 1 0 5 1 9",
		"12 (c) S 1 1 1 0 -1 0 0 0 0 0 1 1 1 1 20 0 1 0 5 1 z",
	} {
		if _, err := parseStat([]byte(line)); err == nil {
			t.Errorf("parseStat(%q): no error", line)
		}
	}
}

func TestParsePss(t *testing.T) {
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		t.Skip("no smaps_rollup:", err)
	}
	kb, err := parsePss(b)
	if err != nil || kb <= 0 {
		t.Fatalf("Pss = %d, %v", kb, err)
	}
	for _, bad := range []string{"", "Rss: 1 kB\n", "Pss: 1\n", "Pss: -1 kB\n", "Pss: x kB\n"} {
		if _, err := parsePss([]byte(bad)); err == nil {
			t.Errorf("parsePss(%q): no error", bad)
		}
	}
}

// The tree sum must include grandchildren: a Postfix master's smtpd
// processes, or moat's role children.
func TestSampleTreeCountsDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 5 & sleep 5; wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var u treeUsage
	for range 50 { // the shell forks its two sleeps shortly after starting
		var err error
		if u, err = sampleTree("/proc", cmd.Process.Pid, true); err != nil {
			t.Fatal(err)
		}
		if u.Procs >= 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if u.Procs < 3 || u.RSSBytes <= 0 || u.PSSKB <= 0 {
		t.Errorf("tree = %+v, want sh and two sleeps with memory", u)
	}
	if _, err := sampleTree("/proc", 1<<30, false); err == nil {
		t.Error("a missing root: no error")
	}
}

func TestMeasureRunsCommandAndCounts(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	if err := os.MkdirAll(filepath.Join(md, "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The "generator" delivers two messages itself; measure must see them.
	script := "touch " + filepath.Join(md, "new", "1") + " " + filepath.Join(md, "new", "2")
	var out bytes.Buffer
	err := measure([]string{"-pid", itoa(os.Getpid()), "-maildir", md, "-sent", "2",
		"-queue", dir, "-done-timeout", "5s", "--", "sh", "-c", script}, &out)
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"rc=0 ", " delivered=2 ", " queued=0"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
}

func TestIdleHoldsConnections(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("220 test ESMTP\r\n"))
			go func() { _, _ = bufio.NewReader(c).ReadString('\n'); c.Close() }()
		}
	}()
	var out bytes.Buffer
	err = idle([]string{"-pid", itoa(os.Getpid()), "-addr", l.Addr().String(), "-n", "20",
		"-timeout", "10s", "-settle", "0s"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "n=20 greeted=20 ") {
		t.Errorf("output %q", out.String())
	}
	if err := waitListen([]string{"-addr", l.Addr().String(), "-timeout", "5s"}); err != nil {
		t.Error(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (a) b (c)) S 7 4242 4242 0 -1 4194560 100 0 0 0 11 22 33 44 20 0 1 0 5 1000 9 18446744073709551615 1 1 0 0\n"))
	f.Add([]byte("1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 5 1000 9\n"))
	f.Add([]byte("12 (c) S 1 1 1"))
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStat(b)
		if err != nil {
			return
		}
		// Whatever parsed must come from the text: the pid is before "(".
		if !bytes.Contains(b, []byte(strconv.Itoa(max(s.PID, -s.PID)))) {
			t.Errorf("pid %d not in %q", s.PID, b)
		}
	})
}

func FuzzParsePss(f *testing.F) {
	f.Add([]byte("Rss: 10 kB\nPss: 7 kB\n"))
	f.Add([]byte("Pss: 1\n"))
	if b, err := os.ReadFile("/proc/self/smaps_rollup"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		kb, err := parsePss(b)
		if err == nil && kb < 0 {
			t.Errorf("negative Pss %d from %q", kb, b)
		}
	})
}

func TestPollInterval(t *testing.T) {
	for _, c := range []struct{ elapsed, want time.Duration }{
		{0, 50 * time.Millisecond},
		{5 * time.Second, 50 * time.Millisecond},
		{20 * time.Second, 100 * time.Millisecond},
		{100 * time.Second, 500 * time.Millisecond},
		{time.Hour, 500 * time.Millisecond},
	} {
		if got := pollInterval(c.elapsed); got != c.want {
			t.Errorf("pollInterval(%v) = %v, want %v", c.elapsed, got, c.want)
		}
	}
}
