package test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The load tests of issue 4 (anvil and smtpd_timeout): loopback only,
// bounded in count and time. Client source addresses other than 127.0.0.1
// (127.0.0.2, ...) stand for other hosts; Linux routes all of 127/8 to lo.
// Each server has smtpd_peername_lookup = no: a PTR query for 127.0.0.10
// may wait seconds on the resolver, which would measure DNS, not moat.

// noLookup is the main.cf line every load test starts from.
const noLookup = "smtpd_peername_lookup = no\n"

// dialFrom connects to addr from the loopback address src.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr)
}

// greeting reads the first reply line of a new connection.
func greeting(c net.Conn) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// smtplibSend sends n messages from source address src with Python's
// smtplib, one connection each, and prints each message's seconds.
func smtplibSend(t *testing.T, port int, src string, n int, tag string) (string, error) {
	t.Helper()
	script := fmt.Sprintf(`
import smtplib, time
for i in range(%d):
    t0 = time.monotonic()
    s = smtplib.SMTP("127.0.0.1", %d, timeout=20, source_address=(%q, 0), local_hostname="client.example")
    s.sendmail("sender@example.org", ["user@mx.moat.test"],
        ("Subject: %s %%d\r\n\r\nhello\r\n" %% i).encode())
    s.quit()
    print("sent %%.4f" %% (time.monotonic() - t0))
`, n, port, src, tag)
	return runTool(t, 120*time.Second, script, "python3", "-")
}

// sentTimes parses smtplibSend's output.
func sentTimes(out string) []float64 {
	var ts []float64
	for _, m := range regexp.MustCompile(`sent ([0-9.]+)`).FindAllStringSubmatch(out, -1) {
		f, _ := strconv.ParseFloat(m[1], 64)
		ts = append(ts, f)
	}
	return ts
}

func maxOf(ts []float64) float64 {
	m := 0.0
	for _, t := range ts {
		m = max(m, t)
	}
	return m
}

// treeRSS sums VmRSS (kB) of pid and its descendants, so the figure stays
// right when the master runs smtpd as child processes.
func treeRSS(pid int) int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The field after the parenthesised name is the state, then ppid.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 {
				pp, _ := strconv.Atoi(f[1])
				children[pp] = append(children[pp], p)
			}
		}
	}
	total := 0
	var walk func(int)
	walk = func(p int) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b); m != nil {
			kb, _ := strconv.Atoi(string(m[1]))
			total += kb
		}
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	return total
}

func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// TestAnvilConnectionFlood: one address floods connections and hits
// smtpd_client_connection_rate_limit, with Postfix's reply and warning;
// meanwhile a second address is still served and its mail delivered.
func TestAnvilConnectionFlood(t *testing.T) {
	const limit, flood = 20, 200
	s := startServer(t, noLookup+fmt.Sprintf(`smtpd_client_connection_rate_limit = %d
anvil_status_update_time = 2s
`, limit))
	start := time.Now()
	var ok, refused, other atomic.Int32
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20)
	for range flood {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialFrom("127.0.0.1", s.addr())
			if err != nil {
				other.Add(1)
				return
			}
			defer c.Close()
			line, _ := greeting(c)
			switch {
			case strings.HasPrefix(line, "220 "):
				ok.Add(1)
				fmt.Fprintf(c, "QUIT\r\n")
			case line == "421 4.7.0 mx.moat.test Error: too many connections from 127.0.0.1":
				refused.Add(1)
			default:
				other.Add(1)
				t.Errorf("unexpected greeting %q", line)
			}
		}()
	}
	wg.Wait()
	floodTime := time.Since(start)
	t.Logf("flood of %d connections from 127.0.0.1 in %v: %d greeted, %d refused, %d other",
		flood, floodTime.Round(time.Millisecond), ok.Load(), refused.Load(), other.Load())
	// The start-up probe counted too, so at most limit-1 flood connections
	// were greeted.
	if ok.Load() > limit || refused.Load() < flood-limit {
		t.Fatalf("%d greeted, %d refused; rate limit %d", ok.Load(), refused.Load(), limit)
	}
	s.waitLog(`warning: Connection rate limit exceeded: \d+ from unknown\[127\.0\.0\.1\] for service 127\.0\.0\.1:\d+`, 10*time.Second)
	// Another host is served while 127.0.0.1 is still over its rate.
	out, err := smtplibSend(t, s.port, "127.0.0.2", 3, "other host")
	if err != nil {
		t.Fatalf("127.0.0.2 not served: %v\n%s", err, out)
	}
	s.waitDelivered("user", 3, 30*time.Second)
	c, err := dialFrom("127.0.0.1", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	line, _ := greeting(c)
	c.Close()
	if !strings.HasPrefix(line, "421 4.7.0") {
		t.Fatalf("127.0.0.1 served again within the unit: %q", line)
	}
	s.waitLog(`statistics: max connection rate \d+/60s for \(127\.0\.0\.1:\d+:127\.0\.0\.1\) at `, 10*time.Second)
}

// raiseNoFile lifts the soft open-file limit to need (within the hard
// limit), for the client side of many held connections; moat inherits it.
func raiseNoFile(t *testing.T, need uint64) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur >= need {
		return
	}
	if rl.Max < need {
		t.Skipf("RLIMIT_NOFILE hard limit %d < %d", rl.Max, need)
	}
	old := rl
	rl.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// TestManyIdleConnections: 2000 connections from 20 addresses (100 each,
// within smtpd_client_connection_count_limit) are held idle after their
// greeting while another host sends mail, which is served without waiting.
func TestManyIdleConnections(t *testing.T) {
	const hosts, per = 20, 100
	raiseNoFile(t, 3*hosts*per+1000)
	s := startServer(t, noLookup+fmt.Sprintf(`default_process_limit = %d
smtpd_client_connection_count_limit = %d
smtpd_client_connection_rate_limit = 0
`, hosts*per+100, per))
	rssBefore := treeRSS(s.pid())
	start := time.Now()
	var mu sync.Mutex
	var conns []net.Conn
	var bad atomic.Int32
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for h := range hosts {
		src := fmt.Sprintf("127.0.0.%d", 10+h)
		for range per {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c, err := dialFrom(src, s.addr())
				if err != nil {
					bad.Add(1)
					return
				}
				if line, err := greeting(c); err != nil || !strings.HasPrefix(line, "220 ") {
					bad.Add(1)
					c.Close()
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	held := time.Since(start)
	if bad.Load() != 0 || len(conns) != hosts*per {
		t.Fatalf("%d connections greeted, %d failed", len(conns), bad.Load())
	}
	rssHeld := treeRSS(s.pid())
	sendStart := time.Now()
	out, err := smtplibSend(t, s.port, "127.0.0.2", 20, "during idle load")
	if err != nil {
		t.Fatalf("sender not served while %d connections are held: %v\n%s", len(conns), err, out)
	}
	times := sentTimes(out)
	s.waitDelivered("user", 20, 60*time.Second)
	t.Logf("%d idle connections greeted in %v; moat RSS %d kB before, %d kB held (%.1f kB per connection); "+
		"20 messages from another host in %v (slowest %.3fs)",
		len(conns), held.Round(time.Millisecond), rssBefore, rssHeld,
		float64(rssHeld-rssBefore)/float64(len(conns)), time.Since(sendStart).Round(time.Millisecond), maxOf(times))
	if m := maxOf(times); m > 10 {
		t.Fatalf("a message took %.1fs with idle connections held", m)
	}
	// The held connections are still alive.
	for _, c := range conns[:10] {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "NOOP\r\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "250") {
			t.Fatalf("held connection: %q %v", line, err)
		}
	}
}

// TestSlowLoris: clients that trickle one byte every three seconds are cut
// off by smtpd_timeout (2s) with Postfix's 421 and "timeout after"
// record, while other clients' mail goes through at once. The service's
// process limit is above the number of slow clients: at the limit, new
// clients wait in the listen queue until smtpd_timeout frees a slot, as in
// Postfix.
func TestSlowLoris(t *testing.T) {
	const loris = 100
	s := startServer(t, noLookup+`smtpd_timeout = 2s
smtpd_client_connection_count_limit = 0
default_process_limit = 150
`)
	start := time.Now()
	type result struct {
		line string
		took time.Duration
	}
	results := make(chan result, loris)
	for i := range loris {
		go func() {
			c, err := dialFrom(fmt.Sprintf("127.0.1.%d", 1+i%200), s.addr())
			if err != nil {
				results <- result{line: err.Error()}
				return
			}
			defer c.Close()
			r := bufio.NewReader(c)
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := r.ReadString('\n'); err != nil {
				results <- result{line: "no greeting"}
				return
			}
			t0 := time.Now()
			// One byte of "EHLO x" every 3s, while reading for the reply.
			done := make(chan struct{})
			go func() {
				defer close(done)
				for _, b := range []byte("EHLO loris.example\r\n") {
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
					select {
					case <-time.After(3 * time.Second):
					case <-done:
						return
					}
				}
			}()
			line, _ := r.ReadString('\n')
			results <- result{line: strings.TrimRight(line, "\r\n"), took: time.Since(t0)}
		}()
	}
	// Meanwhile, real mail from another host.
	out, err := smtplibSend(t, s.port, "127.0.0.2", 10, "during slow loris")
	if err != nil {
		t.Fatalf("sender not served during slow loris: %v\n%s", err, out)
	}
	times := sentTimes(out)
	var slowest time.Duration
	for range loris {
		r := <-results
		if r.line != "421 4.4.2 mx.moat.test Error: timeout exceeded" {
			t.Fatalf("slow-loris client got %q", r.line)
		}
		slowest = max(slowest, r.took)
	}
	s.waitDelivered("user", 10, 30*time.Second)
	s.waitLogCount(`timeout after CONNECT from unknown\[127\.0\.1\.\d+\]`, loris, 10*time.Second)
	t.Logf("%d slow-loris clients cut off (slowest after %v, all within %v); 10 messages meanwhile, slowest %.3fs",
		loris, slowest.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), maxOf(times))
	if slowest > 5*time.Second {
		t.Fatalf("a slow-loris client held on for %v with smtpd_timeout 2s", slowest)
	}
	if m := maxOf(times); m > 1.5 {
		t.Fatalf("a message took %.1fs during slow loris (smtpd_timeout is 2s)", m)
	}
}
