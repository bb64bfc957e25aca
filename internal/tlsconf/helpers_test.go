package tlsconf

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// netPipe is a connected pair of loopback TCP sockets (real sockets, as the
// handshake runs on in smtpd).
func netPipe(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	b, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a == nil {
		t.Fatal("accept failed")
	}
	for _, c := range []net.Conn{a, b} {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
