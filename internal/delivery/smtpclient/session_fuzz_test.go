package smtpclient

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"moat/internal/delivery"
	"moat/internal/queue"
)

var fuzzMsg = []byte("Subject: test\r\n\r\nhello\r\n.dot line\r\n")

// fuzzRequest is a request for three recipients over fuzzMsg.
func fuzzRequest(flags queue.Flags) *delivery.Request {
	req := &delivery.Request{
		QueueID:  "4Xg7Hn1F2Bz9abc",
		Envelope: &queue.Envelope{Sender: "sender@example.org", Size: int64(len(fuzzMsg)), Flags: flags},
		Content:  func() io.Reader { return bytes.NewReader(fuzzMsg) },
		Nexthop:  "example.com",
	}
	for i, r := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		req.Recipients = append(req.Recipients, delivery.Recipient{Index: i, Address: r})
	}
	return req
}

// FuzzSession plays any server byte stream against the client side of
// the protocol, SMTP and LMTP, final server or not: every recipient ends
// with at most one outcome whose DSN class agrees with its state, a final
// server decides every recipient, and the session ends (the stream runs
// out, then the connection closes).
func FuzzSession(f *testing.F) {
	ok := "220 x\r\n250-x\r\n250-PIPELINING\r\n250 SIZE 100\r\n250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n250 2.0.0 a\r\n451 4.0.0 b\r\n221 bye\r\n"
	f.Add([]byte(ok), uint8(0))
	f.Add([]byte("220 x\r\n250 x\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 a\r\n"), uint8(1))
	f.Add([]byte("220 x\r\n250-x\r\n250 PIPELINING\r\n421 4.3.2 bye\r\n"), uint8(2))
	f.Add([]byte("220 x\r\n250 x\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\ngarbage\r\n"), uint8(3))
	f.Add([]byte("554 no\r\n"), uint8(0))
	f.Add([]byte("220 x\r\n502 no ehlo\r\n250 x\r\n250 ok\r\n452 full\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n"), uint8(2))
	f.Fuzz(func(t *testing.T, server []byte, mode uint8) {
		st := &Settings{LMTP: mode&1 != 0, HeloName: "me", MyHostname: "me", SkipGreeting5xx: true, Downgrade: true,
			Helo: time.Second, Mail: time.Second, Rcpt: time.Second, DataInit: time.Second,
			DataXfer: time.Second, DataDone: time.Second, Quit: time.Second, RSET: time.Second, Now: time.Now}
		final := mode&2 == 0
		req := fuzzRequest(queue.Flag8BitMIME)
		c1, c2 := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			go io.Copy(io.Discard, c2)
			c2.Write(server)
			c2.Close()
		}()
		d := NewDelivery(context.Background(), st, req)
		w := NewConn(c1, "h", "h[127.0.0.1]", "h[127.0.0.1]:25", time.Now())
		if d.Session(w, final) {
			d.Quit(w)
		}
		c1.Close()
		<-done
		if final && !d.Done() {
			t.Fatalf("final server left %d recipients undecided", len(d.Pending()))
		}
		if len(d.out) > len(req.Recipients) {
			t.Fatalf("%d outcomes for %d recipients", len(d.out), len(req.Recipients))
		}
		for _, o := range d.out {
			r := o.Result
			want := map[queue.RcptState]byte{queue.RcptDelivered: '2', queue.RcptDeferred: '4', queue.RcptBounced: '5'}[r.State]
			if want == 0 || len(r.DSN) < 5 || r.DSN[0] != want || r.Reason == "" {
				t.Fatalf("result %+v", r)
			}
			if !final && r.State == queue.RcptDeferred && r.DSN != "4.3.0" {
				t.Fatalf("non-final server deferred a recipient: %+v", r)
			}
		}
	})
}
