package smtpd

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/queue"
)

var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9]([ -].*)?$`)

// FuzzSession drives a whole session with fuzzed client bytes over net.Pipe:
// no panic, no hang, and every line the server sends is a well-formed reply
// line (RFC 5321 §4.2).
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<c@d> NOTIFY=NEVER\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<c@d>\r\nBDAT 4\r\nabcdBDAT 2 LAST\r\nef",
		"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\n.\nMAIL FROM:<e@f>\r\n.\r\n",
		"EHLO x\r\nVRFY a\r\nETRN b\r\nEXPN c\r\nRSET\r\nNOOP\r\nHELP\r\nGET / HTTP/1.0\r\n",
		"EHLO x\r\nMAIL FROM:<a@b> RET=FULL ENVID=x+2B\r\nRCPT TO:<\"q q\"@d> ORCPT=rfc822;x@y\r\nBDAT x\r\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	main := "myhostname = mx.example.com\nsmtpd_timeout = 2\nsmtpd_error_sleep_time = 0\n" +
		"smtpd_forbid_unauth_pipelining = no\nmessage_size_limit = 4096\nsmtpd_helo_required = no\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(main), 0o644); err != nil {
		f.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		f.Fatal(err)
	}
	q, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{Create: true})
	if err != nil {
		f.Fatal(err)
	}
	log := maillog.New(maillog.Options{Sink: &logSink{}, Fallback: &logSink{}, SyslogName: "postfix", Daemon: "smtpd", QueueSize: 16})
	defer log.Close(context.Background())
	srv, err := New(Deps{Config: cfg, Service: "smtp", Log: log, Queue: q})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 1<<16 {
			return
		}
		cli, srvConn := net.Pipe()
		done := make(chan struct{})
		go func() { srv.ServeConn(context.Background(), srvConn); close(done) }()
		go func() {
			_ = cli.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = cli.Write(in)
			time.Sleep(time.Millisecond)
			cli.Close()
		}()
		_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(cli)
		var bad string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			if bad == "" && (len(line) < 2 || line[len(line)-2] != '\r' || !replyLine.MatchString(line[:len(line)-2])) {
				bad = line
			}
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
		if bad != "" {
			t.Fatalf("malformed reply line %q", bad)
		}
	})
}
