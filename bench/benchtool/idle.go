package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"
)

// idle opens -n connections to the server, reads each greeting, and with
// all of them held open compares the server tree's memory to before: the
// cost of an idle session (issue 3's goal: under 64 KB). Both RSS (what
// the goal names) and PSS are reported, since summed RSS counts shared
// pages once per process and so overstates a process-per-session server.
func idle(args []string, out io.Writer) error {
	fl := flag.NewFlagSet("idle", flag.ContinueOnError)
	pid := fl.Int("pid", 0, "root process of the server")
	addr := fl.String("addr", "", "server address host:port")
	n := fl.Int("n", 1000, "connections to open")
	timeout := fl.Duration("timeout", 60*time.Second, "limit for opening all connections and reading their greetings")
	settle := fl.Duration("settle", 2*time.Second, "pause before measuring, with every connection open")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *pid <= 0 || *addr == "" || *n <= 0 {
		return errors.New("idle: need -pid, -addr and -n > 0")
	}
	before, err := sampleTree("/proc", *pid, true)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(*timeout)
	conns := make([]net.Conn, *n)
	greeted := make([]bool, *n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	// At most 64 dials in flight: the listen backlog (and Postfix's
	// one fork per connection) should not turn into refused connections.
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range *n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := net.DialTimeout("tcp", *addr, time.Until(deadline))
			if err != nil {
				return
			}
			conns[i] = c
			_ = c.SetReadDeadline(deadline)
			line, err := bufio.NewReader(c).ReadString('\n')
			greeted[i] = err == nil && strings.HasPrefix(line, "220")
		}()
	}
	wg.Wait()
	open := time.Since(start)
	ok := 0
	for _, g := range greeted {
		if g {
			ok++
		}
	}
	time.Sleep(*settle)
	after, err := sampleTree("/proc", *pid, true)
	if err != nil {
		return err
	}
	per := func(delta int64) float64 {
		if ok == 0 {
			return 0
		}
		return float64(delta) / float64(ok)
	}
	fmt.Fprintf(out, "n=%d greeted=%d open_s=%.2f procs_before=%d procs_after=%d rss_before_kb=%d rss_after_kb=%d pss_before_kb=%d pss_after_kb=%d rss_per_conn_kb=%.1f pss_per_conn_kb=%.1f\n",
		*n, ok, open.Seconds(), before.Procs, after.Procs, before.RSSBytes/1024, after.RSSBytes/1024,
		before.PSSKB, after.PSSKB, per((after.RSSBytes-before.RSSBytes)/1024), per(after.PSSKB-before.PSSKB))
	return nil
}

// freePort prints a loopback TCP port that was free a moment ago, for a
// server instance's listener.
func freePort(out io.Writer) error {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("freeport: %w", err)
	}
	defer l.Close()
	fmt.Fprintln(out, l.Addr().(*net.TCPAddr).Port)
	return nil
}

// waitListen waits, bounded, until a server answers with its 220
// greeting, so a run never starts against a half-started server.
func waitListen(args []string) error {
	fl := flag.NewFlagSet("wait", flag.ContinueOnError)
	addr := fl.String("addr", "", "server address host:port")
	timeout := fl.Duration("timeout", 30*time.Second, "limit")
	pid := fl.Int("pid", 0, "server process; its exit ends the wait at once")
	if err := fl.Parse(args); err != nil {
		return err
	}
	deadline := time.Now().Add(*timeout)
	for {
		if *pid > 0 {
			if err := syscall.Kill(*pid, 0); errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("wait %s: server process %d exited", *addr, *pid)
			}
		}
		c, err := net.DialTimeout("tcp", *addr, time.Second)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte("QUIT\r\n"))
			c.Close()
			if rerr == nil && strings.HasPrefix(line, "220") {
				return nil
			}
			err = fmt.Errorf("greeting %q: %v", strings.TrimSpace(line), rerr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait %s: %w", *addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
