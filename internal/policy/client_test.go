package policy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// The request carries every attribute, in Postfix's order, with the null
// sender and empty values written as empty, and nothing a client sends can
// add a line.
func TestRequestAttributes(t *testing.T) {
	srv := startServer(t, "tcp", action("DUNNO"))
	s := fast(srv.endpoint())
	s.Context = "submission"
	s.CompatibilityLevel = "3.6"
	c := NewPool().Client(s)
	r := &Request{
		ProtocolState: "RCPT", ProtocolName: "ESMTP", HeloName: "evil\r\naction=OK\n\nx",
		QueueID: "", Sender: "", Recipient: "rcpt@example.com", ClientAddress: "192.0.2.1",
		ClientName: "unknown", ReverseClientName: "ptr.example", ClientPort: "40000",
		Instance: "123.456.7", SASLMethod: "PLAIN", SASLUsername: "joe", Size: 1234,
		CCertSubject: "a b=c+d", CCertIssuer: "CA", CCertFingerprint: "AA:BB",
		EncryptionProtocol: "TLSv1.3", EncryptionCipher: "TLS_AES_128_GCM_SHA256", EncryptionKeysize: 128,
		Stress: "yes", ServerAddress: "192.0.2.2", ServerPort: "25",
	}
	got, err := c.Query(t.Context(), r)
	if err != nil || got != "DUNNO" {
		t.Fatalf("Query = %q, %v", got, err)
	}
	want := "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
		"client_address=192.0.2.1\nclient_name=unknown\nclient_port=40000\n" +
		"reverse_client_name=ptr.example\nserver_address=192.0.2.2\nserver_port=25\n" +
		"helo_name=evil??action=OK??x\nsender=\nrecipient=rcpt@example.com\nrecipient_count=0\n" +
		"queue_id=\ninstance=123.456.7\nsize=1234\netrn_domain=\nstress=yes\n" +
		"sasl_method=PLAIN\nsasl_username=joe\nsasl_sender=\n" +
		"ccert_subject=a+20b+3Dc+2Bd\nccert_issuer=CA\nccert_fingerprint=AA:BB\nccert_pubkey_fingerprint=\n" +
		"encryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_128_GCM_SHA256\nencryption_keysize=128\n" +
		"policy_context=submission\ncompatibility_level=3.6\nmail_version=0.1.0\n\n"
	if string(srv.raw[0]) != want {
		t.Errorf("request:\n%s\nwant:\n%s", srv.raw[0], want)
	}
	if conns, reqs := srv.stats(); conns != 1 || reqs != 1 {
		t.Errorf("conns, requests = %d, %d; an injected empty line must not start a second request", conns, reqs)
	}
}

// One connection serves consecutive queries (Postfix keeps its policy
// connection open between requests and sessions).
func TestReuse(t *testing.T) {
	srv := startServer(t, "tcp", func(_, _ int, a map[string]string) string {
		return "action=PREPEND X-Instance: " + a["instance"] + "\n\n"
	})
	p := NewPool()
	defer p.Close()
	s := fast(srv.endpoint())
	for i := range 5 {
		c := p.Client(s) // the same client each time
		got, err := c.Query(t.Context(), &Request{Instance: fmt.Sprint(i)})
		if err != nil || got != fmt.Sprintf("PREPEND X-Instance: %d", i) {
			t.Fatalf("query %d = %q, %v", i, got, err)
		}
	}
	if conns, reqs := srv.stats(); conns != 1 || reqs != 5 {
		t.Errorf("conns, requests = %d, %d; want 1, 5", conns, reqs)
	}
	if c1, c2 := p.Client(s), p.Client(s); c1 != c2 {
		t.Error("Pool.Client returns different clients for the same settings")
	}
	other := s
	other.Context = "other"
	if p.Client(s) == p.Client(other) {
		t.Error("Pool.Client shares a client between different settings")
	}
}

// smtpd_policy_service_request_limit: a new connection after N requests.
func TestRequestLimit(t *testing.T) {
	srv := startServer(t, "tcp", action("DUNNO"))
	s := fast(srv.endpoint())
	s.RequestLimit = 2
	c := NewPool().Client(s)
	for range 5 {
		if got, err := c.Query(t.Context(), &Request{}); err != nil || got != "DUNNO" {
			t.Fatalf("Query = %q, %v", got, err)
		}
	}
	if conns, reqs := srv.stats(); conns != 3 || reqs != 5 {
		t.Errorf("conns, requests = %d, %d; want 3, 5", conns, reqs)
	}
	if !srv.waitClosed(1) || !srv.waitClosed(2) {
		t.Error("connections at the request limit were not closed")
	}
}

// smtpd_policy_service_max_idle closes an idle connection (the server sees
// it go) and the next query opens another.
func TestMaxIdle(t *testing.T) {
	srv := startServer(t, "tcp", action("DUNNO"))
	s := fast(srv.endpoint())
	s.MaxIdle = 100 * time.Millisecond
	c := NewPool().Client(s)
	if _, err := c.Query(t.Context(), &Request{}); err != nil {
		t.Fatal(err)
	}
	if !srv.waitClosed(1) {
		t.Fatal("idle connection not closed after max_idle")
	}
	if got, err := c.Query(t.Context(), &Request{}); err != nil || got != "DUNNO" {
		t.Fatalf("Query = %q, %v", got, err)
	}
	if conns, _ := srv.stats(); conns != 2 {
		t.Errorf("conns = %d, want 2", conns)
	}
}

// smtpd_policy_service_max_ttl: a connection older than the TTL is closed
// after its request, even when it never sat idle that long.
func TestMaxTTL(t *testing.T) {
	srv := startServer(t, "tcp", action("DUNNO"))
	s := fast(srv.endpoint())
	s.MaxTTL = 150 * time.Millisecond
	c := NewPool().Client(s)
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 100 && time.Now().Before(deadline); i++ {
		if _, err := c.Query(t.Context(), &Request{}); err != nil {
			t.Fatal(err)
		}
		if conns, _ := srv.stats(); conns >= 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if conns, _ := srv.stats(); conns < 2 {
		t.Fatalf("conns = %d; max_ttl never replaced the connection", conns)
	}
	if !srv.waitClosed(1) {
		t.Error("the first connection was not closed at max_ttl")
	}
}

// A server that does not answer within smtpd_policy_service_timeout costs
// try_limit attempts, then the default action and Postfix's warning.
func TestTimeoutDefaultAction(t *testing.T) {
	srv := startServer(t, "tcp", func(int, int, map[string]string) string { return "HANG" })
	log, logged := newLog(t)
	p := NewPool()
	p.SetLog(log)
	s := fast(srv.endpoint())
	s.Timeout = 150 * time.Millisecond
	s.TryLimit = 3
	got, err := p.Client(s).Query(t.Context(), &Request{})
	if err != nil || got != "451 4.3.5 Server configuration problem" {
		t.Fatalf("Query = %q, %v", got, err)
	}
	if conns, reqs := srv.stats(); conns != 3 || reqs != 3 {
		t.Errorf("conns, requests = %d, %d; want 3 attempts", conns, reqs)
	}
	want := "problem talking to server " + strings.TrimPrefix(srv.endpoint(), "inet:") + ": Connection timed out"
	if l := logged(); !strings.Contains(l, want) {
		t.Errorf("log %q lacks %q", l, want)
	}
}

// Malformed replies are failures: retried, then the default action.
func TestMalformedReplies(t *testing.T) {
	for _, tc := range []struct{ name, reply string }{
		{"no action", "foo=bar\n\n"},
		{"empty action", "action=\n\n"},
		{"no equals", "action DUNNO\n\n"},
		{"action without a value", "action\n\n"},
		{"long line", "action=" + strings.Repeat("x", MaxReplyLine) + "\n\n"},
		{"many lines", strings.Repeat("x=y\n", MaxReplyAttrs+1) + "action=OK\n\n"},
		{"truncated", "action=OK"},
		{"closed", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, "tcp", func(_, _ int, _ map[string]string) string {
				if tc.reply == "action=OK" {
					return tc.reply + "\x00"
				}
				return tc.reply
			})
			s := fast(srv.endpoint())
			s.DefaultAction = "DUNNO"
			got, err := NewPool().Client(s).Query(t.Context(), &Request{})
			if err != nil || got != "DUNNO" {
				t.Fatalf("Query = %q, %v; want the default action", got, err)
			}
			if _, reqs := srv.stats(); reqs != 2 {
				t.Errorf("requests = %d, want try_limit 2", reqs)
			}
		})
	}
}

// Postfix's reply scanner skips attributes it did not ask for, lines
// without '=', and an action after the first.
func TestReplyExtras(t *testing.T) {
	srv := startServer(t, "tcp", func(int, int, map[string]string) string {
		return "x-info=hello\nnot an attribute\naction=OK done\naction=REJECT\n\n"
	})
	got, err := NewPool().Client(fast(srv.endpoint())).Query(t.Context(), &Request{})
	if err != nil || got != "OK done" {
		t.Fatalf("Query = %q, %v; want the first action", got, err)
	}
}

// A connection the server closed while idle is noticed when it is taken:
// the query goes to a new connection without spending an attempt.
func TestServerClosedIdle(t *testing.T) {
	srv := startServer(t, "tcp", func(int, int, map[string]string) string {
		return "action=OK\n\n\x00" // answer, then hang up
	})
	s := fast(srv.endpoint())
	s.TryLimit = 1
	s.DefaultAction = "DUNNO"
	c := NewPool().Client(s)
	for i := range 3 {
		if got, err := c.Query(t.Context(), &Request{}); err != nil || got != "OK" {
			t.Fatalf("query %d = %q, %v; want OK on a fresh connection", i, got, err)
		}
		srv.waitHungUp(i + 1)
	}
	if conns, reqs := srv.stats(); conns != 3 || reqs != 3 {
		t.Errorf("conns, requests = %d, %d; want 3, 3", conns, reqs)
	}
}

// A failure on the first attempt (a reused connection the server dropped)
// is recovered on the second, on a new connection.
func TestRetryRecovers(t *testing.T) {
	srv := startServer(t, "tcp", func(conn, req int, _ map[string]string) string {
		if conn == 1 && req == 2 {
			return "" // drop the connection instead of answering
		}
		return "action=OK\n\n"
	})
	c := NewPool().Client(fast(srv.endpoint()))
	for i := range 3 {
		if got, err := c.Query(t.Context(), &Request{}); err != nil || got != "OK" {
			t.Fatalf("query %d = %q, %v", i, got, err)
		}
	}
	if conns, reqs := srv.stats(); conns != 2 || reqs != 4 {
		t.Errorf("conns, requests = %d, %d; want 2, 4", conns, reqs)
	}
}

// Nobody listening: the default action, with the connect error logged.
func TestConnectionRefused(t *testing.T) {
	srv := startServer(t, "tcp", action("OK"))
	ep := srv.endpoint()
	srv.ln.Close()
	log, logged := newLog(t)
	p := NewPool()
	c := p.Client(fast(ep))
	p.SetLog(log) // after the client exists: it still applies
	got, err := c.Query(t.Context(), &Request{})
	if err != nil || got != "451 4.3.5 Server configuration problem" {
		t.Fatalf("Query = %q, %v", got, err)
	}
	if l := logged(); !strings.Contains(l, "problem talking to server "+strings.TrimPrefix(ep, "inet:")+": Connection refused") {
		t.Errorf("log %q", l)
	}
}

// unix: endpoints, absolute and relative to the working directory (the
// queue directory or jail root of a daemon: "unix:private/policy").
func TestUnixEndpoint(t *testing.T) {
	srv := startServer(t, "unix", action("REJECT go away"))
	got, err := NewPool().Client(fast(srv.endpoint())).Query(t.Context(), &Request{})
	if err != nil || got != "REJECT go away" {
		t.Fatalf("Query = %q, %v", got, err)
	}
	path := strings.TrimPrefix(srv.endpoint(), "unix:")
	dir, base := path[:strings.LastIndexByte(path, '/')], path[strings.LastIndexByte(path, '/')+1:]
	t.Chdir(dir)
	got, err = NewPool().Client(fast("unix:"+base)).Query(t.Context(), &Request{})
	if err != nil || got != "REJECT go away" {
		t.Fatalf("relative Query = %q, %v", got, err)
	}
}

// Sessions share a client concurrently; each gets its own answer.
func TestConcurrent(t *testing.T) {
	srv := startServer(t, "tcp", func(_, _ int, a map[string]string) string {
		return "action=PREPEND X-I: " + a["instance"] + "\n\n"
	})
	c := NewPool().Client(fast(srv.endpoint()))
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			for j := range 5 {
				inst := fmt.Sprintf("%d.%d", i, j)
				got, err := c.Query(t.Context(), &Request{Instance: inst})
				if err != nil || got != "PREPEND X-I: "+inst {
					errs <- fmt.Errorf("%s: %q, %v", inst, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if conns, reqs := srv.stats(); reqs != 200 || conns > 40 {
		t.Errorf("conns, requests = %d, %d", conns, reqs)
	}
}

// A session that goes away stops the query with its context's error, not
// the default action.
func TestContextCanceled(t *testing.T) {
	srv := startServer(t, "tcp", func(int, int, map[string]string) string { return "HANG" })
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	s := fast(srv.endpoint())
	s.Timeout = 10 * time.Second
	got, err := NewPool().Client(s).Query(ctx, &Request{})
	if err == nil || got != "" {
		t.Fatalf("Query = %q, %v; want the context's error", got, err)
	}
}

// After Pool.Close queries fail over to the default action.
func TestPoolClose(t *testing.T) {
	srv := startServer(t, "tcp", action("OK"))
	p := NewPool()
	s := fast(srv.endpoint())
	s.DefaultAction = "DUNNO"
	c := p.Client(s)
	if got, _ := c.Query(t.Context(), &Request{}); got != "OK" {
		t.Fatalf("Query = %q", got)
	}
	p.Close()
	if !srv.waitClosed(1) {
		t.Error("Close left the connection open")
	}
	if got, err := c.Query(t.Context(), &Request{}); err != nil || got != "DUNNO" {
		t.Errorf("Query after Close = %q, %v", got, err)
	}
}
