package lmtp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/delivery"
	"moat/internal/queue"
	"moat/internal/testutil/dovecot"
)

var users = map[string]string{"alice@example.com": "", "bob@example.com": "",
	"carol@example.com": "", "dave@example.com": ""}

// TestDovecot runs the scenarios against one Dovecot instance (each with
// its own users), since starting one costs seconds on a busy machine.
func TestDovecot(t *testing.T) {
	dv := dovecot.Start(t, dovecot.Options{Users: users})
	t.Run("UnixTwoUsersOneUnknown", func(t *testing.T) { testUnixTwoUsersOneUnknown(t, dv) })
	t.Run("InetBigMessage", func(t *testing.T) { testInetBigMessage(t, dv) })
	t.Run("QueueMessage", func(t *testing.T) { testQueueMessage(t, dv) })
}

// lf is how Dovecot's Maildir stores what moat sent with CRLF.
func lf(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }

func onlyMessage(t *testing.T, dv *dovecot.Server, user string) []byte {
	t.Helper()
	msgs, err := dv.Messages(user)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%s has %d messages, want 1", user, len(msgs))
	}
	return msgs[0]
}

// Two users and an unknown one in one session over the UNIX socket, named
// relative to queue_directory as "lmtp:unix:private/dovecot-lmtp" is: one
// DATA, two 250s, one 550 at RCPT.
func testUnixTwoUsersOneUnknown(t *testing.T, dv *dovecot.Server) {
	a := newAgent(t, dv.Dir, nil)
	content := []byte("From: sender@example.org\r\nTo: alice@example.com\r\nSubject: two\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\n")
	req := request("unix:lmtp", content, "alice@example.com", "nobody@example.com", "bob@example.com")
	res := deliver(t, a, req)
	relay := testHost + "[lmtp]"
	for _, i := range []int{0, 2} {
		r := res[i]
		rcpt := req.Recipients[i].Address
		if r.State != queue.RcptDelivered || r.DSN != "2.0.0" || r.Relay != relay ||
			!strings.HasPrefix(r.Reason, "250 2.0.0 <"+rcpt+"> ") || !strings.HasSuffix(r.Reason, " Saved") {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	checkResult(t, res[1], queue.RcptBounced, "5.1.1",
		"host "+relay+" said: 550 5.1.1 <nobody@example.com> User doesn't exist: nobody@example.com (in reply to RCPT TO command)", relay)
	for _, u := range []string{"alice@example.com", "bob@example.com"} {
		stored := onlyMessage(t, dv, u)
		if got := dovecot.Body(stored); !bytes.Equal(got, lf(content)) {
			t.Errorf("%s stored\n%q\nwant\n%q", u, got, lf(content))
		}
		if !bytes.HasPrefix(stored, []byte("Return-Path: <sender@example.org>\n")) {
			t.Errorf("%s: no Return-Path from MAIL FROM: %q", u, stored[:40])
		}
	}
}

// A 1 MB message over TCP, many lines beginning with ".", byte-exact in
// the Maildir.
func testInetBigMessage(t *testing.T, dv *dovecot.Server) {
	a := newAgent(t, t.TempDir(), nil)
	var b bytes.Buffer
	b.WriteString("Subject: big\r\n\r\n")
	for i := 0; b.Len() < 1<<20; i++ {
		switch i % 4 {
		case 0:
			b.WriteString(".\r\n")
		case 1:
			fmt.Fprintf(&b, ".line %d %s\r\n", i, strings.Repeat("x", 70))
		case 2:
			b.WriteString("..\r\n")
		default:
			fmt.Fprintf(&b, "%s\r\n", strings.Repeat("y", 500))
		}
	}
	content := b.Bytes()
	res := deliver(t, a, request("inet:"+dv.LMTPAddr, content, "carol@example.com"))
	_, port, _ := strings.Cut(dv.LMTPAddr, ":")
	if r := res[0]; r.State != queue.RcptDelivered || r.Relay != "127.0.0.1[127.0.0.1]:"+port {
		t.Fatalf("result %+v", r)
	}
	if got := dovecot.Body(onlyMessage(t, dv, "carol@example.com")); !bytes.Equal(got, lf(content)) {
		t.Errorf("stored %d bytes, want %d (differ)", len(got), len(lf(content)))
	}
}

// A real queue file as the content, read back through the queue's
// consumer API as the queue manager does.
func testQueueMessage(t *testing.T, dv *dovecot.Server) {
	q, err := queue.Open(t.TempDir(), queue.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("Subject: from the queue\r\n\r\nbody\r\n")
	w.Envelope.Sender = "sender@example.org"
	w.Envelope.Recipients = []queue.Recipient{{Address: "dave@example.com"}}
	w.Envelope.Arrival = time.Now()
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	id, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	m, err := q.Open(queue.Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	req := &delivery.Request{
		QueueID:    id,
		Envelope:   &m.Envelope,
		Content:    m.Content,
		Nexthop:    "inet:" + dv.LMTPAddr,
		Recipients: []delivery.Recipient{{Index: 0, Address: "dave@example.com"}},
	}
	res := deliver(t, newAgent(t, t.TempDir(), nil), req)
	if res[0].State != queue.RcptDelivered {
		t.Fatalf("result %+v", res[0])
	}
	if got := dovecot.Body(onlyMessage(t, dv, "dave@example.com")); !bytes.Equal(got, lf(content)) {
		t.Errorf("stored %q", got)
	}
}

// TestDovecotThroughput measures what the benchmark table needs: 1000
// 1 KB messages, one recipient each, sequentially and from 8 goroutines (MOAT_LMTP_BENCH_N changes the
// count). It is slow for CI, so it runs only with MOAT_LMTP_BENCH=1.
func TestDovecotThroughput(t *testing.T) {
	if os.Getenv("MOAT_LMTP_BENCH") == "" {
		t.Skip("set MOAT_LMTP_BENCH=1 to measure LMTP throughput")
	}
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("MOAT_LMTP_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	// MOAT_LMTP_BENCH_DOVECOT adds dovecot.conf lines, such as
	// "mail_fsync = never" to see the client's share of the time.
	dv := dovecot.Start(t, dovecot.Options{Users: users, Extra: os.Getenv("MOAT_LMTP_BENCH_DOVECOT")})
	// MOAT_LMTP_BENCH_NOCACHE=1 makes a connection per message.
	var over map[string]string
	if os.Getenv("MOAT_LMTP_BENCH_NOCACHE") != "" {
		over = map[string]string{"lmtp_connection_cache_on_demand": "no"}
	}
	a := newAgent(t, dv.Dir, over)
	body := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("z", 62)+"\r\n", 16)
	content := []byte(body[:1024])
	// One mailbox serializes deliveries on its lock; MOAT_LMTP_BENCH_USERS=4
	// spreads them over four.
	rcpts := []string{"alice@example.com"}
	if os.Getenv("MOAT_LMTP_BENCH_USERS") == "4" {
		rcpts = append(rcpts, "bob@example.com", "carol@example.com", "dave@example.com")
	}
	for _, nexthop := range []string{"unix:lmtp", "inet:" + dv.LMTPAddr} {
		for _, par := range []int{1, 8} {
			start := time.Now()
			var wg sync.WaitGroup
			var mu sync.Mutex
			failed := 0
			jobs := make(chan int)
			for g := 0; g < par; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range jobs {
						res := a.Deliver(context.Background(), request(nexthop, content, rcpts[i%len(rcpts)]))
						if res[0].State != queue.RcptDelivered {
							mu.Lock()
							failed++
							mu.Unlock()
						}
					}
				}()
			}
			for i := 0; i < n; i++ {
				jobs <- i
			}
			close(jobs)
			wg.Wait()
			el := time.Since(start)
			t.Logf("%s, %d in parallel: %d messages in %v = %.0f msg/s (%d failed)",
				nexthop, par, n, el.Round(time.Millisecond), float64(n)/el.Seconds(), failed)
			if failed > 0 {
				t.Errorf("%d deliveries failed", failed)
			}
		}
	}
}
