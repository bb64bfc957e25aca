package smtpd

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/anvil"
	"moat/internal/maillog"
)

// withAnvil gives the service an in-process anvil table.
func withAnvil(l anvil.Limiter) func(*Server) {
	return func(s *Server) { s.d.Anvil = l }
}

// noExceptions keeps loopback clients counted: the default exception list
// is $mynetworks, which holds loopback.
const noExceptions = ""

func hasLog(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func TestConnectionCountLimit(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_client_connection_count_limit": "2",
		"smtpd_client_event_limit_exceptions": noExceptions}, nil, "", withAnvil(anvil.NewTable(anvil.Options{})))
	a := h.greeted()
	h.greeted()
	c := h.dial()
	c.expect("421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1")
	c.closed()
	h.waitLog("warning: Connection concurrency limit exceeded: 3 from " + h.client + " for service smtp")
	// The refused connection and a closed one both count down.
	a.cmd("QUIT", "221")
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := h.logs()
		n := 0
		for _, x := range l {
			if strings.HasPrefix(x, "disconnect from") {
				n++
			}
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("disconnects not logged:\n%s", strings.Join(l, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.greeted().cmd("QUIT", "221")
}

func TestConnectionRateLimit(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_client_connection_count_limit": "0",
		"smtpd_client_connection_rate_limit":  "3",
		"smtpd_client_event_limit_exceptions": noExceptions}, nil, "", withAnvil(anvil.NewTable(anvil.Options{})))
	for range 3 {
		h.greeted().cmd("QUIT", "221")
	}
	c := h.dial()
	c.expect("421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1")
	c.closed()
	h.waitLog("warning: Connection rate limit exceeded: 4 from " + h.client + " for service smtp")
}

func TestMessageAndRecipientRateLimits(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_client_message_rate_limit": "2",
		"smtpd_client_recipient_rate_limit":   "3",
		"smtpd_client_event_limit_exceptions": noExceptions}, nil, "", withAnvil(anvil.NewTable(anvil.Options{})))
	c := h.greeted()
	c.cmd("EHLO client.example", "250")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0")
	c.cmd("RCPT TO:<x@mx.example.com>", "250")
	c.cmd("RCPT TO:<y@mx.example.com>", "250")
	c.cmd("RSET", "250")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0")
	c.cmd("RCPT TO:<z@mx.example.com>", "250")
	c.cmd("RCPT TO:<w@mx.example.com>", "450 4.7.1 Error: too many recipients from 127.0.0.1")
	c.cmd("RSET", "250")
	c.cmd("MAIL FROM:<a@example.org>", "450 4.7.1 Error: too much mail from 127.0.0.1")
	c.cmd("QUIT", "221")
	l := h.waitLog("disconnect from")
	for _, want := range []string{
		"warning: Recipient address rate limit exceeded: 4 from " + h.client + " for service smtp",
		"warning: Message delivery request rate limit exceeded: 3 from " + h.client + " for service smtp",
	} {
		if !hasLog(l, want) {
			t.Errorf("missing %q in\n%s", want, strings.Join(l, "\n"))
		}
	}
}

// TestEventLimitExceptions: clients in smtpd_client_event_limit_exceptions
// (by default $mynetworks) are neither counted nor limited.
func TestEventLimitExceptions(t *testing.T) {
	tb := anvil.NewTable(anvil.Options{})
	h := newHarness(t, map[string]string{"smtpd_client_connection_count_limit": "1",
		"smtpd_client_event_limit_exceptions": "127.0.0.0/8"}, nil, "", withAnvil(tb))
	for range 3 {
		h.greeted()
	}
	if n := tb.Len(); n != 0 {
		t.Fatalf("excepted client counted: %d entries", n)
	}
	h2 := newHarness(t, map[string]string{"smtpd_client_connection_count_limit": "1",
		"mynetworks": "127.0.0.0/8"}, nil, "", withAnvil(tb))
	h2.greeted()
	h2.greeted()
}

// TestNoLimitsNoAnvil: with every limit 0, sessions do not ask anvil, as
// Postfix's smtpd makes no anvil client then.
func TestNoLimitsNoAnvil(t *testing.T) {
	tb := anvil.NewTable(anvil.Options{})
	h := newHarness(t, map[string]string{"smtpd_client_connection_count_limit": "0",
		"smtpd_client_event_limit_exceptions": noExceptions}, nil, "", withAnvil(tb))
	h.greeted().cmd("QUIT", "221")
	h.waitLog("disconnect from")
	if tb.Len() != 0 {
		t.Fatal("anvil asked with no limit set")
	}
}

// TestAnvilUnreachable: a dead anvil service costs a warning, not the
// session (fail open, as Postfix's smtpd).
func TestAnvilUnreachable(t *testing.T) {
	c := anvil.NewClient(filepath.Join(t.TempDir(), "no-anvil"))
	h := newHarness(t, map[string]string{"smtpd_client_connection_count_limit": "1",
		"smtpd_client_message_rate_limit":     "1",
		"smtpd_client_event_limit_exceptions": noExceptions}, nil, "", withAnvil(c))
	a := h.greeted()
	b := h.greeted()
	b.cmd("EHLO client.example", "250")
	b.cmd("MAIL FROM:<a@example.org>", "250")
	b.cmd("QUIT", "221")
	a.cmd("QUIT", "221")
	h.waitLog("continuing without client limits")
}

// TestAuthAndTLSHooks exercises the AUTH and new-TLS-session checks that
// issue 7's commands will call.
func TestAuthAndTLSHooks(t *testing.T) {
	h := newHarness(t, map[string]string{"smtpd_client_auth_rate_limit": "1",
		"smtpd_client_new_tls_session_rate_limit": "1",
		"smtpd_client_event_limit_exceptions":     noExceptions}, nil, "", withAnvil(anvil.NewTable(anvil.Options{})))
	srvSide, cliSide := net.Pipe()
	defer cliSide.Close()
	defer srvSide.Close()
	ss := newSession(context.Background(), h.srv, srvSide)
	ss.client = maillog.Client{Addr: netip.MustParseAddr("192.0.2.9")}
	ss.anvil = ss.anvilOn()
	if !ss.anvil {
		t.Fatal("client not counted")
	}
	// The client side reads what the session writes (net.Pipe blocks a
	// writer until then).
	replies := make(chan string, 1)
	go func() {
		_ = cliSide.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 1024)
		var got strings.Builder
		for !strings.Contains(got.String(), "sessions from 192.0.2.9\r\n421") || !strings.HasSuffix(got.String(), "\r\n") {
			n, err := cliSide.Read(buf)
			if err != nil {
				break
			}
			got.Write(buf[:n])
		}
		replies <- got.String()
	}()
	if !ss.anvilAuth() || ss.anvilAuth() {
		t.Fatal("auth rate limit 1 not applied")
	}
	// Checks before a handshake do not count; handshakes do.
	for range 3 {
		if !ss.anvilTLSAllowed(false) {
			t.Fatal("TLS refused before any session")
		}
	}
	if !ss.anvilTLSCount() || ss.anvilTLSCount() {
		t.Fatal("TLS rate limit 1 not applied after the handshake")
	}
	if ss.anvilTLSAllowed(false) || ss.anvilTLSAllowed(true) {
		t.Fatal("TLS allowed over the rate limit")
	}
	got := <-replies
	want := "450 4.7.1 Error: too many AUTH commands from 192.0.2.9\r\n" +
		"454 4.7.0 Error: too many new TLS sessions from 192.0.2.9\r\n" +
		"421 4.7.0 mx.example.com Error: too many new TLS sessions from 192.0.2.9\r\n"
	if got != want {
		t.Fatalf("replies %q, want %q", got, want)
	}
	l := h.waitLog("New TLS session rate limit exceeded: 2 from unknown[192.0.2.9] for service smtp")
	for _, w := range []string{"warning: AUTH command rate limit exceeded: 2 from unknown[192.0.2.9] for service smtp",
		"warning: New TLS session rate limit exceeded: 2 from unknown[192.0.2.9] for service smtp"} {
		if !hasLog(l, w) {
			t.Fatalf("missing %q:\n%s", w, strings.Join(l, "\n"))
		}
	}
}

// TestAnvilAcrossServers: two smtpd servers (as two processes would), each
// with its own client of one anvil service, share the client's count.
func TestAnvilAcrossServers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "anvil")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	alog := maillog.New(maillog.Options{Sink: &logSink{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- anvil.ServeTable(ctx, ln, anvil.NewTable(anvil.Options{}), time.Hour, alog) }()
	t.Cleanup(func() { cancel(); <-done })
	params := map[string]string{"smtpd_client_connection_count_limit": "2",
		"smtpd_client_event_limit_exceptions": noExceptions}
	c1, err := anvil.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2 := anvil.NewClient(path)
	defer c2.Close()
	h1 := newHarness(t, params, nil, "", withAnvil(c1))
	h2 := newHarness(t, params, nil, "", withAnvil(c2))
	a := h1.greeted()
	h2.greeted()
	c := h1.dial()
	c.expect("421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1")
	c.closed()
	a.cmd("QUIT", "221")
	a.closed()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := h2.dial()
		if strings.HasPrefix(c.reply(), "220 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("h1's closed session still counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
