package smtpclient

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"moat/internal/delivery"
	"moat/internal/sasl"
)

// FuzzAuthSession plays any server byte stream after an EHLO that offers
// AUTH: the session ends, every recipient of the final server is
// decided, and with the default security options in clear the password
// never crosses the connection.
func FuzzAuthSession(f *testing.F) {
	f.Add([]byte("220 x\r\n250-x\r\n250 AUTH LOGIN PLAIN CRAM-MD5\r\n334 PDEyMz4=\r\n235 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n"), uint8(0))
	f.Add([]byte("220 x\r\n250-x\r\n250 AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 5.7.8 no\r\n"), uint8(1))
	f.Add([]byte("220 x\r\n250-x\r\n250 AUTH=PLAIN\r\n334 \r\n334 \r\n334 \r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, server []byte, mode uint8) {
		plain, _ := sasl.ParseSecurityOptions("noanonymous")
		if mode&1 == 0 {
			plain, _ = sasl.ParseSecurityOptions("noplaintext, noanonymous")
		}
		st := &Settings{HeloName: "me", Helo: time.Second, Mail: time.Second, Rcpt: time.Second, DataInit: time.Second,
			DataXfer: time.Second, DataDone: time.Second, Quit: time.Second, RSET: time.Second, Now: time.Now,
			Auth: &Auth{Plain: plain, SoftBounce: mode&2 == 0, Lookup: func(*delivery.Request, string) (string, string, bool, error) {
				return "user", "Sekr1t-Pw", true, nil
			}}}
		c1, c2 := net.Pipe()
		got := make(chan string, 1)
		go func() {
			var b strings.Builder
			done := make(chan struct{})
			go func() { io.Copy(&b, c2); close(done) }()
			c2.Write(server)
			c2.Close()
			<-done
			got <- b.String()
		}()
		d := NewDelivery(context.Background(), st, fuzzRequest(0))
		w := NewConn(c1, "h", "h[127.0.0.1]", "h[127.0.0.1]:25", time.Now())
		if d.Session(w, true) {
			d.Quit(w)
		}
		c1.Close()
		sent := <-got
		if !d.Done() {
			t.Fatalf("final server left %d recipients undecided", len(d.Pending()))
		}
		if mode&1 == 0 && (strings.Contains(sent, "AUTH PLAIN") || strings.Contains(sent, "AUTH LOGIN") || strings.Contains(sent, "U2VrcjF0LVB3")) {
			t.Fatalf("plaintext credentials sent in clear: %q", sent)
		}
	})
}
