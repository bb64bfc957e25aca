package smtpclient

import (
	"bufio"
	"context"
	"encoding/base64"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/delivery"
	"moat/internal/queue"
	"moat/internal/sasl"
)

// scripted is a loopback server that answers each client line with the
// next reply of its script (after the greeting) and records the lines;
// a reply of "" sends nothing for that line.
type scripted struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func startScripted(t *testing.T, greeting string, replies ...string) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte(greeting))
		br := bufio.NewReader(c)
		for _, r := range replies {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			s.mu.Lock()
			s.lines = append(s.lines, strings.TrimRight(line, "\r\n"))
			s.mu.Unlock()
			c.Write([]byte(r))
		}
	}()
	t.Cleanup(func() { ln.Close(); <-s.done })
	return s
}

func (s *scripted) sent() []string {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines
}

// authSession runs one final-server session with AUTH settings a.
func authSession(t *testing.T, s *scripted, a *Auth) Outcome {
	t.Helper()
	st := &Settings{HeloName: "me.example", Helo: 5 * time.Second, Mail: 5 * time.Second, Rcpt: 5 * time.Second,
		DataInit: 5 * time.Second, DataXfer: 5 * time.Second, DataDone: 5 * time.Second, Quit: 5 * time.Second,
		RSET: 5 * time.Second, Now: time.Now, Auth: a}
	c, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	req := fuzzRequest(0)
	req.Recipients = req.Recipients[:1]
	d := NewDelivery(context.Background(), st, req)
	w := NewConn(c, "relay.example", "relay.example[127.0.0.1]", "relay.example[127.0.0.1]:25", time.Now())
	if d.Session(w, true) {
		d.Quit(w)
	}
	return d.Outcomes()[0]
}

func login(user, pass string) func(*delivery.Request, string) (string, string, bool, error) {
	return func(*delivery.Request, string) (string, string, bool, error) { return user, pass, true, nil }
}

func opts(t *testing.T, v string) sasl.SecurityOptions {
	o, err := sasl.ParseSecurityOptions(v)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

const ehloAuth = "250-relay.example\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// LOGIN: user name and password each answer one challenge, then the
// mail goes out.
func TestAuthLoginDelivers(t *testing.T) {
	s := startScripted(t, "220 relay.example\r\n", ehloAuth,
		"334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n", "235 2.7.0 ok\r\n",
		"250 ok\r\n", "250 ok\r\n", "354 go\r\n", "", "", "", "", "250 2.0.0 queued\r\n", "221 bye\r\n")
	o := authSession(t, s, &Auth{Lookup: login("u@example.org", "p:w"), Plain: opts(t, "noanonymous"),
		Filter: func(m string) bool { return m == "LOGIN" }})
	if o.State != queue.RcptDelivered {
		t.Errorf("outcome %+v", o)
	}
	got := s.sent()
	if len(got) < 4 || got[1] != "AUTH LOGIN" || got[2] != b64("u@example.org") || got[3] != b64("p:w") {
		t.Errorf("client sent %q", got)
	}
}

// The default options refuse the plaintext mechanisms in clear: no AUTH
// goes out, the mail is deferred with Postfix's text.
func TestAuthNoWorthyMech(t *testing.T) {
	s := startScripted(t, "220 relay.example\r\n", ehloAuth, "221 bye\r\n")
	o := authSession(t, s, &Auth{Lookup: login("u", "secret"), Plain: opts(t, "noplaintext, noanonymous"),
		TLS: opts(t, "noanonymous")})
	if o.State != queue.RcptDeferred || o.DSN != "4.7.0" ||
		o.Reason != "SASL authentication failed; cannot authenticate to server relay.example[127.0.0.1]: no mechanism available" {
		t.Errorf("outcome %+v", o)
	}
	for _, l := range s.sent() {
		if strings.HasPrefix(l, "AUTH") || strings.Contains(l, b64("secret")) {
			t.Errorf("client sent %q", l)
		}
	}
}

// A 535 defers with smtp_sasl_auth_soft_bounce and bounces without it;
// a challenge the client cannot read defers without a cancel.
func TestAuthFailures(t *testing.T) {
	for _, c := range []struct {
		soft        bool
		reply       string
		state       queue.RcptState
		dsn, reason string
	}{
		{true, "535 5.7.8 Error: authentication failed: bad\r\n", queue.RcptDeferred, "4.7.8",
			"SASL authentication failed; server relay.example[127.0.0.1] said: 535 5.7.8 Error: authentication failed: bad"},
		{false, "535 5.7.8 Error: authentication failed: bad\r\n", queue.RcptBounced, "5.7.8",
			"SASL authentication failed; server relay.example[127.0.0.1] said: 535 5.7.8 Error: authentication failed: bad"},
		{true, "454 4.7.0 Temporary authentication failure\r\n", queue.RcptDeferred, "4.7.0",
			"SASL authentication failed; server relay.example[127.0.0.1] said: 454 4.7.0 Temporary authentication failure"},
		{true, "334 %%% not base64\r\n", queue.RcptDeferred, "4.7.0",
			"SASL authentication failed; cannot authenticate to server relay.example[127.0.0.1]: illegal base64 data at input byte 0"},
	} {
		s := startScripted(t, "220 relay.example\r\n", ehloAuth, c.reply, "221 bye\r\n")
		o := authSession(t, s, &Auth{Lookup: login("u", "p"), Plain: opts(t, "noanonymous"), SoftBounce: c.soft})
		if o.State != c.state || o.DSN != c.dsn || o.Reason != c.reason {
			t.Errorf("%q soft=%v: outcome %+v", c.reply, c.soft, o)
		}
		if got := s.sent(); len(got) < 2 || got[1] != "AUTH PLAIN "+b64("\x00u\x00p") {
			t.Errorf("client sent %q", got)
		}
	}
}
