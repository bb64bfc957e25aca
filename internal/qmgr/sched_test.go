package qmgr

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/delivery"
	"moat/internal/delivery/smtp"
	"moat/internal/postqueue"
	"moat/internal/queue"
)

// receiver is a loopback SMTP server for the scheduling tests: it accepts
// every message after holding its DATA for hold (so deliveries overlap),
// or answers every greeting with greet when set (a destination that
// refuses to talk), and counts sessions, deliveries and the deliveries
// in progress at once.
type receiver struct {
	ln    net.Listener
	hold  time.Duration
	greet string

	mu        sync.Mutex
	sessions  int
	delivered int
	inData    int
	maxInData int
	// early: a delivery began beyond the initial concurrency before any
	// had finished (no slow start).
	early bool
	init  int
	wg    sync.WaitGroup
}

// serveAll accepts connections on ln until it is closed, serving each
// with serve; wg counts the accept loop and every connection.
func serveAll(t *testing.T, ln net.Listener, wg *sync.WaitGroup, serve func(net.Conn)) {
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Error(err)
				}
				return
			}
			wg.Go(func() { serve(c) })
		}
	})
}

func startReceiver(t *testing.T, hold time.Duration, greet string, init int) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{ln: ln, hold: hold, greet: greet, init: init}
	serveAll(t, ln, &r.wg, r.serve)
	t.Cleanup(func() {
		ln.Close()
		r.wg.Wait()
	})
	return r
}

func (r *receiver) port() string {
	_, p, _ := net.SplitHostPort(r.ln.Addr().String())
	return p
}

func (r *receiver) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r.mu.Lock()
	r.sessions++
	r.mu.Unlock()
	br := bufio.NewReader(c)
	say := func(s string) bool { _, err := c.Write([]byte(s + "\r\n")); return err == nil }
	r.mu.Lock()
	greet := r.greet
	r.mu.Unlock()
	if greet != "" {
		say(greet)
		return
	}
	say("220 sink.test ESMTP")
	for n := 0; n < 10000; n++ {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			say("250-sink.test\r\n250 PIPELINING")
		case strings.HasPrefix(cmd, "DATA"):
			r.mu.Lock()
			r.inData++
			if r.inData > r.init && r.delivered == 0 {
				r.early = true
			}
			r.maxInData = max(r.maxInData, r.inData)
			r.mu.Unlock()
			say("354 go ahead")
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			time.Sleep(r.hold)
			r.mu.Lock()
			r.inData--
			r.delivered++
			r.mu.Unlock()
			say("250 2.0.0 queued")
		case strings.HasPrefix(cmd, "QUIT"):
			say("221 bye")
			return
		default: // MAIL, RCPT, RSET, NOOP
			say("250 2.0.0 ok")
		}
	}
}

// revive makes a refusing receiver accept mail.
func (r *receiver) revive() {
	r.mu.Lock()
	r.greet = ""
	r.mu.Unlock()
}

func (r *receiver) counts() (sessions, delivered, maxInData int, early bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessions, r.delivered, r.maxInData, r.early
}

// smtpAgents gives the manager the real smtp(8) agent.
func smtpAgents() map[string]AgentFactory {
	return map[string]AgentFactory{"smtp": delivery.Factory(smtp.New)}
}

// TestSlowStart: 40 messages to one destination start at
// initial_destination_concurrency (5) and grow, by positive feedback, to
// smtp_destination_concurrency_limit (8) and never past it (qmgr(8)
// STRATEGIES).
func TestSlowStart(t *testing.T) {
	rcv := startReceiver(t, 150*time.Millisecond, "", 5)
	e := newEnvWith(t, "relayhost = [127.0.0.1]:"+rcv.port()+"\nsmtp_destination_concurrency_limit = 8\n"+
		"smtp_connection_cache_on_demand = no\n", "", smtpAgents())
	var ids []string
	for i := range 40 {
		ids = append(ids, e.put("s@example.org", "r"+string(rune('a'+i%26))+"@remote.example"))
	}
	e.start()
	e.waitFor("40 deliveries", 60*time.Second, func() bool { _, d, _, _ := rcv.counts(); return d == 40 })
	_, _, most, early := rcv.counts()
	t.Logf("at most %d deliveries at once", most)
	if early {
		t.Error("more than the initial concurrency of 5 before any delivery finished: no slow start")
	}
	if most <= 5 || most > 8 {
		t.Errorf("at most %d deliveries at once; want the window to grow past 5 up to the limit 8", most)
	}
	e.waitFor("removal", 10*time.Second, func() bool {
		for _, id := range ids {
			if !e.gone(id) {
				return false
			}
		}
		return true
	})
}

// TestDeadDestination: a destination whose server answers 421 is
// declared dead after the failed-cohort limit; its other mail is deferred
// without an attempt ("delivery temporarily suspended: REASON"), while 50
// messages to a live destination in the same run are all delivered. Once
// the server answers again, postqueue -f ends the suspension at once
// (minimal_backoff_time is an hour here).
func TestDeadDestination(t *testing.T) {
	dead := startReceiver(t, 0, "421 4.3.2 dead.example closing", 5)
	live := startReceiver(t, 20*time.Millisecond, "", 5)
	e := newEnvWith(t, "transport_maps = inline:{ dead.example=smtp:[127.0.0.1]:"+dead.port()+
		", live.example=smtp:[127.0.0.1]:"+live.port()+" }\nminimal_backoff_time = 1h\nqueue_run_delay = 1h\n",
		"", smtpAgents())
	var deadIDs []string
	for i := range 50 {
		if i%2 == 0 {
			deadIDs = append(deadIDs, e.put("s@example.org", "u@dead.example"))
		}
		e.put("s@example.org", "u@live.example")
	}
	e.start()
	e.waitFor("50 live deliveries and 25 deferrals", 60*time.Second, func() bool {
		_, d, _, _ := live.counts()
		if d != 50 {
			return false
		}
		for _, id := range deadIDs {
			if !e.inQueue(queue.Deferred, id) {
				return false
			}
		}
		return true
	})
	sessions, _, _, _ := dead.counts()
	t.Logf("%d sessions at the dead destination for %d messages", sessions, len(deadIDs))
	if sessions >= len(deadIDs) || sessions == 0 {
		t.Errorf("the dead destination had %d sessions for %d messages; want it tried a few times, then suspended", sessions, len(deadIDs))
	}
	suspended := regexp.MustCompile(`^postfix/qmgr\[PID\]: \w+: to=<u@dead.example>, relay=none, .*dsn=4\.3\.2, status=deferred ` +
		`\(delivery temporarily suspended: host 127\.0\.0\.1\[127\.0\.0\.1\] refused to talk to me: 421 4\.3\.2 dead\.example closing\)$`)
	n := 0
	for _, l := range e.logs() {
		if suspended.MatchString(l) {
			n++
		}
	}
	if n+sessions < len(deadIDs) || n == 0 {
		t.Errorf("%d suspended deferrals and %d sessions for %d messages", n, sessions, len(deadIDs))
	}
	dead.revive()
	if err := os.Mkdir(filepath.Join(e.fix.QueueDir, postqueue.TriggerDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := postqueue.WriteRequest(e.fix.QueueDir, postqueue.Request{Kind: postqueue.FlushAll}); err != nil {
		t.Fatal(err)
	}
	e.m.Wake()
	e.waitFor("delivery after postqueue -f", 30*time.Second, func() bool { _, d, _, _ := dead.counts(); return d == len(deadIDs) })
}

// TestRateDelay: with smtp_destination_rate_delay the destination gets one
// delivery at a time with the delay between them: shortly after the first
// of three messages arrives, not all three have (a count, not a timing).
func TestRateDelay(t *testing.T) {
	rcv := startReceiver(t, 0, "", 5)
	e := newEnvWith(t, "relayhost = [127.0.0.1]:"+rcv.port()+"\nsmtp_destination_rate_delay = 2s\n", "", smtpAgents())
	for range 3 {
		e.put("s@example.org", "r@remote.example")
	}
	e.start()
	e.waitFor("the first delivery", 30*time.Second, func() bool { _, d, _, _ := rcv.counts(); return d >= 1 })
	time.Sleep(500 * time.Millisecond)
	if _, d, most, _ := rcv.counts(); d == 3 || most > 1 {
		t.Errorf("%d of 3 delivered half a second after the first, %d at once; want a 2 s pause between them", d, most)
	}
	e.waitFor("all three", 30*time.Second, func() bool { _, d, _, _ := rcv.counts(); return d == 3 })
}

// TestBusyDestinationDoesNotHoldWorkers: 40 messages for a destination
// with an hour's rate delay are older than 20 for another; the first
// takes its one delivery and the rest park instead of holding the
// workers, so the other destination's mail is all delivered, and Run
// still stops at once.
func TestBusyDestinationDoesNotHoldWorkers(t *testing.T) {
	slow := startReceiver(t, 0, "", 5)
	live := startReceiver(t, 0, "", 5)
	e := newEnvWith(t, "transport_maps = inline:{ slow.example=slow:[127.0.0.1]:"+slow.port()+
		", live.example=smtp:[127.0.0.1]:"+live.port()+" }\nslow_destination_rate_delay = 1h\n",
		"slow unix - - n - - smtp\n", smtpAgents())
	for range 40 {
		e.put("s@example.org", "u@slow.example")
	}
	for range 20 {
		e.put("s@example.org", "u@live.example")
	}
	e.start()
	e.waitFor("20 live deliveries", 60*time.Second, func() bool { _, d, _, _ := live.counts(); return d == 20 })
	if _, d, _, _ := slow.counts(); d != 1 {
		t.Errorf("%d deliveries to the rate-delayed destination, want 1", d)
	}
	begin := time.Now()
	e.stop()
	if time.Since(begin) > 10*time.Second {
		t.Error("Run waited for the rate delay before it stopped")
	}
	active, err := e.fix.Queue.List(queue.Active)
	if err != nil || len(active) != 0 {
		t.Errorf("active/ after Run: %v (%v)", active, err)
	}
}
