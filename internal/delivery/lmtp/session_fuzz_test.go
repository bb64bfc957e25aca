package lmtp

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"moat/internal/queue"
)

// FuzzSession plays any server byte stream against the client side of
// the protocol: whatever the server says, every recipient gets exactly
// one result whose DSN class agrees with its state, and the session
// ends (the stream runs out, then the connection closes).
func FuzzSession(f *testing.F) {
	ok := "220 x\r\n250-x\r\n250-PIPELINING\r\n250 SIZE 100\r\n250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n250 2.0.0 a\r\n451 4.0.0 b\r\n221 bye\r\n"
	f.Add([]byte(ok))
	f.Add([]byte("220 x\r\n250 x\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 a\r\n"))
	f.Add([]byte("220 x\r\n250-x\r\n250 PIPELINING\r\n421 4.3.2 bye\r\n"))
	f.Add([]byte("220 x\r\n250 x\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\ngarbage\r\n"))
	f.Add([]byte("554 no\r\n"))
	f.Fuzz(func(t *testing.T, server []byte) {
		a := &Agent{s: settings{lhloName: "me", myhostname: "me", tcpPort: 24,
			lhlo: time.Second, mail: time.Second, rcpt: time.Second, dataInit: time.Second,
			dataXfer: time.Second, dataDone: time.Second, quit: time.Second}, now: time.Now}
		req := request("inet:127.0.0.1", msg, "a@example.com", "b@example.com", "c@example.com")
		c1, c2 := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			go io.Copy(io.Discard, c2)
			c2.Write(server)
			c2.Close()
		}()
		s := newSession(context.Background(), a, req, Nexthop{Host: "127.0.0.1", Port: 24})
		s.namaddr, s.relay = "h[127.0.0.1]", "h[127.0.0.1]:24"
		s.setConn(c1)
		s.transaction()
		c1.Close()
		<-done
		if len(s.results) != len(req.Recipients) {
			t.Fatalf("%d results for %d recipients: %+v", len(s.results), len(req.Recipients), s.results)
		}
		for _, r := range s.results {
			want := map[queue.RcptState]byte{queue.RcptDelivered: '2', queue.RcptDeferred: '4', queue.RcptBounced: '5'}[r.State]
			if want == 0 || len(r.DSN) < 5 || r.DSN[0] != want || r.Reason == "" {
				t.Fatalf("result %+v", r)
			}
		}
	})
}
