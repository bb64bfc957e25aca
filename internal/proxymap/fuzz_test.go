package proxymap

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"moat/internal/config/configtest"
	"moat/internal/maillog"
	"moat/internal/proxymap/wire"
)

// FuzzServeConn feeds arbitrary bytes to a server connection: whatever a
// client sends, the server answers only in well-formed frames, never
// panics, and hangs up on a malformed frame instead of reading on out of
// sync.
func FuzzServeConn(f *testing.F) {
	cfg := configtest.Load(f, "transport_maps = proxy:inline:{ k=v }\n")
	log := maillog.New(maillog.Options{Sink: &logSink{}, Fallback: &logSink{}, SyslogName: "postfix", Daemon: "proxymap", QueueSize: 16})
	defer log.Close(context.Background())
	srv, err := newServer(cfg, log)
	if err != nil {
		f.Fatal(err)
	}
	defer srv.closeTables()
	f.Add(wire.AppendRequest(nil, wire.Request{Op: wire.OpLookup, Flags: wire.FlagFold, Table: "inline:{ k=v }", Key: "K"}))
	f.Add(wire.AppendRequest(wire.AppendRequest(nil, wire.Request{Op: wire.OpOpen, Table: "proxy:inline:{ k=v }"}),
		wire.Request{Op: wire.OpUpdate, Table: "hash:/x", Key: "a", Value: "b"}))
	f.Add([]byte{0, 0, 0, 3, wire.Version, 'Z', 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 1<<16 {
			return
		}
		cli, sc := net.Pipe()
		done := make(chan struct{})
		go func() { srv.serveConn(sc); sc.Close(); close(done) }()
		var out bytes.Buffer
		readDone := make(chan struct{})
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := cli.Read(buf)
				out.Write(buf[:n])
				if err != nil {
					close(readDone)
					return
				}
			}
		}()
		_ = cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = cli.Write(in)
		cli.Close()
		<-done
		<-readDone
		r := bytes.NewReader(out.Bytes())
		for r.Len() > 0 {
			if _, err := wire.ReadReply(r); err != nil {
				t.Fatalf("server sent a malformed reply: %v", err)
			}
		}
	})
}
