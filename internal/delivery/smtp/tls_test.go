package smtp

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/delivery/smtp/smtpsink"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
	"moat/internal/queue"
	"moat/internal/smtpd"
	"moat/internal/testutil/dnsserver"
	"moat/internal/tlsconf/tlsconftest"
)

// tlsPeer is a second moat (internal/smtpd) on addr:port offering
// STARTTLS with a certificate for cn signed by ca; it counts the
// messages it queued.
type tlsPeer struct {
	mu        sync.Mutex
	committed int
	log       *maillog.Logger
	logs      *maillogtest.Sink
}

func (p *tlsPeer) count() int { p.mu.Lock(); defer p.mu.Unlock(); return p.committed }

func startPeer(t *testing.T, addr, port string, cert *tlsconftest.Cert, more ...string) *tlsPeer {
	t.Helper()
	dir := t.TempDir()
	o := map[string]string{"myhostname": "peer.example", "queue_directory": dir}
	if cert != nil {
		o["smtpd_tls_security_level"] = "may"
		o["smtpd_tls_cert_file"] = cert.CertFile
		o["smtpd_tls_key_file"] = cert.KeyFile
	}
	for i := 0; i+1 < len(more); i += 2 {
		o[more[i]] = more[i+1]
	}
	q, err := queue.Open(filepath.Join(dir, "q"), queue.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	ls := &maillogtest.Sink{}
	log := maillog.New(maillog.Options{Sink: ls, Fallback: ls, SyslogName: "peer", Daemon: "smtpd", PID: 2})
	p := &tlsPeer{log: log, logs: ls}
	srv, err := smtpd.New(smtpd.Deps{Config: config.Empty(dir).WithOverrides(o), Service: "smtp", Log: log, Queue: q,
		Committed: func(string) { p.mu.Lock(); p.committed++; p.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, port))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); srv.ServeConn(ctx, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		wg.Wait()
		srv.Close()
		ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		log.Close(ctx)
	})
	return p
}

// tlsWorld is a CA, a server certificate for mx.tls.test signed by it,
// and the DNS: tls.test's MX mx.tls.test at 127.0.0.21, plain.test's MX
// mx.plain.test at 127.0.0.22 (no STARTTLS).
type tlsWorld struct {
	ca        *tlsconftest.Cert
	port, dns string
	dnsSrv    *dnsserver.Server
	tlsPeer   *tlsPeer
	plainPeer *tlsPeer
	tmp       string
}

func newTLSWorld(t *testing.T) *tlsWorld {
	t.Helper()
	w := &tlsWorld{tmp: t.TempDir()}
	w.ca = tlsconftest.New(t, w.tmp, "ca", "Test CA", tlsconftest.ECDSA, nil, true)
	srvCert := tlsconftest.New(t, w.tmp, "mx", "mx.tls.test", tlsconftest.ECDSA, w.ca, false)
	w.port = smtpsink.FreePort(t, "127.0.0.21", "127.0.0.22")
	w.tlsPeer = startPeer(t, "127.0.0.21", w.port, srvCert)
	w.plainPeer = startPeer(t, "127.0.0.22", w.port, nil)
	w.dnsSrv = dnsserver.Start(t,
		"tls.test. IN MX 10 mx.tls.test.",
		"mx.tls.test. IN A 127.0.0.21",
		"alias.test. IN MX 10 mx.tls.test.",
		"bad.test. IN MX 10 mx.tls.test.",
		"plain.test. IN MX 10 mx.plain.test.",
		"mx.plain.test. IN A 127.0.0.22")
	w.dns = w.dnsSrv.Addr()
	return w
}

func (w *tlsWorld) agent(t *testing.T, over map[string]string) (*Agent, *maillogtest.Sink) {
	o := map[string]string{"smtp_tls_loglevel": "1", "smtp_tls_CAfile": w.ca.CertFile}
	for k, v := range over {
		o[k] = v
	}
	return newAgent(t, w.dns, w.port, o)
}

func TestOutboundTLSLevels(t *testing.T) {
	w := newTLSWorld(t)
	relay := relayOf("mx.tls.test", "127.0.0.21", w.port)

	// may: STARTTLS is used, the certificate checked for the log only.
	a, ls := w.agent(t, map[string]string{"smtp_tls_security_level": "may", "smtp_tls_CAfile": ""})
	checkResult(t, deliver(t, a, request("tls.test", msg, "a@tls.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", relay)
	if l, ok := waitLog(ls, "Untrusted TLS connection established to "+relay+": TLSv1.3 with cipher TLS_"); !ok {
		t.Errorf("may log:\n%s", l)
	}
	// may to a server without STARTTLS: plaintext.
	plainRelay := relayOf("mx.plain.test", "127.0.0.22", w.port)
	checkResult(t, deliver(t, a, request("plain.test", msg, "a@plain.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", plainRelay)

	// verify with the CA and the MX host name.
	a, ls = w.agent(t, map[string]string{"smtp_tls_security_level": "verify"})
	checkResult(t, deliver(t, a, request("tls.test", msg, "b@tls.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", relay)
	if l, ok := waitLog(ls, "Verified TLS connection established to "+relay+": TLSv1.3"); !ok {
		t.Errorf("verify log:\n%s", l)
	}
	n := w.tlsPeer.count()

	// secure matches the next-hop domain, which the certificate does not
	// name: deferred, nothing sent.
	a, ls = w.agent(t, map[string]string{"smtp_tls_security_level": "secure"})
	checkResult(t, deliver(t, a, request("alias.test", msg, "c@alias.test"))[0], queue.RcptDeferred, "4.7.5", "Server certificate not verified", relay)
	if l, ok := waitLog(ls, "Trusted TLS connection established to "+relay); !ok {
		t.Errorf("secure log:\n%s", l)
	}
	// verify with a match that the certificate does not satisfy.
	a, _ = w.agent(t, map[string]string{"smtp_tls_security_level": "verify", "smtp_tls_verify_cert_match": "nexthop"})
	checkResult(t, deliver(t, a, request("tls.test", msg, "c@tls.test"))[0], queue.RcptDeferred, "4.7.5", "Server certificate not verified", relay)
	// verify against another CA: not trusted.
	other := tlsconftest.New(t, t.TempDir(), "other", "Other CA", tlsconftest.ECDSA, nil, true)
	a, _ = w.agent(t, map[string]string{"smtp_tls_security_level": "verify", "smtp_tls_CAfile": other.CertFile})
	checkResult(t, deliver(t, a, request("tls.test", msg, "c@tls.test"))[0], queue.RcptDeferred, "4.7.5", "Server certificate not trusted", relay)
	if got := w.tlsPeer.count(); got != n {
		t.Errorf("the peer queued %d messages after refused verification", got-n)
	}

	// encrypt: no verification, but never in clear.
	a, _ = w.agent(t, map[string]string{"smtp_tls_security_level": "encrypt", "smtp_tls_CAfile": ""})
	checkResult(t, deliver(t, a, request("tls.test", msg, "d@tls.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", relay)
	np := w.plainPeer.count()
	checkResult(t, deliver(t, a, request("plain.test", msg, "d@plain.test"))[0], queue.RcptDeferred, "4.7.4",
		"TLS is required, but was not offered by host mx.plain.test[127.0.0.22]", plainRelay)
	// The old form smtp_enforce_tls is encrypt.
	a, _ = w.agent(t, map[string]string{"smtp_tls_security_level": "", "smtp_enforce_tls": "yes"})
	checkResult(t, deliver(t, a, request("plain.test", msg, "e@plain.test"))[0], queue.RcptDeferred, "4.7.4", "TLS is required*", plainRelay)
	if got := w.plainPeer.count(); got != np {
		t.Errorf("the plaintext peer got %d messages under encrypt", got-np)
	}
}

func TestOutboundTLSPolicyMaps(t *testing.T) {
	w := newTLSWorld(t)
	pm := filepath.Join(w.tmp, "tls_policy")
	body := "plain.test encrypt\n" +
		".test verify match=mx.tls.test\n" +
		"alias.test secure match=nowhere.test\n" +
		"[127.0.0.22]:" + w.port + " none\n" +
		"bad.test fingerprint\n"
	if err := os.WriteFile(pm, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	a, ls := w.agent(t, map[string]string{"smtp_tls_security_level": "may", "smtp_tls_policy_maps": "texthash:" + pm})
	relay := relayOf("mx.tls.test", "127.0.0.21", w.port)
	// ".test" applies to tls.test: verify with an explicit match.
	checkResult(t, deliver(t, a, request("tls.test", msg, "a@tls.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", relay)
	if l, ok := waitLog(ls, "Verified TLS connection established to "+relay); !ok {
		t.Errorf("log:\n%s", l)
	}
	// The exact entry wins over ".test".
	checkResult(t, deliver(t, a, request("alias.test", msg, "a@alias.test"))[0], queue.RcptDeferred, "4.7.5", "Server certificate not verified", relay)
	plainRelay := relayOf("mx.plain.test", "127.0.0.22", w.port)
	checkResult(t, deliver(t, a, request("plain.test", msg, "a@plain.test"))[0], queue.RcptDeferred, "4.7.4", "TLS is required*", plainRelay)
	// A bracketed next hop with its port: none.
	checkResult(t, deliver(t, a, request("[127.0.0.22]:"+w.port, msg, "a@plain.test"))[0], queue.RcptDelivered, "2.0.0", "250 *",
		relayOf("127.0.0.22", "127.0.0.22", w.port))
	// An entry moat cannot honour defers, and the destination is not
	// marked dead.
	for range 2 {
		checkResult(t, deliver(t, a, request("bad.test", msg, "a@bad.test"))[0], queue.RcptDeferred, "4.7.5", "client TLS configuration problem", "none")
	}
	if l, ok := waitLog(ls, `smtp_tls_policy_maps, next-hop destination "bad.test"`); !ok {
		t.Errorf("log:\n%s", l)
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want string
	}{
		{"verify match=hostname:nexthop", true, "verify [hostname nexthop]"},
		{"secure match=.example.com", true, "secure [.example.com]"},
		{"encrypt protocols=>=TLSv1.2", true, "encrypt []"},
		{"none", true, "none []"},
		{"dane", true, "dane []"},
		{"dane-only", true, "dane-only []"},
		{"dane match=nexthop", false, ""},
		{"fingerprint match=AA:BB", false, ""},
		{"may match=x", false, ""},
		{"verify tafile=/x", false, ""},
		{"", false, ""},
		{"bogus", false, ""},
	} {
		p, err := ParsePolicy(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if got := p.Level.String() + " " + strings.Join([]string{"["}, "") + strings.Join(p.Match, " ") + "]"; tc.ok && got != tc.want {
			t.Errorf("%q: got %q want %q", tc.in, got, tc.want)
		}
	}
}

func TestLookupKeys(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a.b.example.com", "a.b.example.com .b.example.com .example.com .com"},
		{"[mx.example.com]", "[mx.example.com]"},
		{"[mx.example.com]:587", "[mx.example.com]:587"},
		{"example.com:2525", "example.com:2525"},
	} {
		d, err := ParseDestinations(tc.in, 25)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(lookupKeys(d[0], 25), " "); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A STARTTLS handshake that fails at "may" is retried in clear on the
// same server, as Postfix's smtp(8) does; at "encrypt" it defers.
func TestOutboundTLSHandshakeFailure(t *testing.T) {
	w := newTLSWorld(t)
	port := smtpsink.FreePort(t, "127.0.0.23")
	srvCert := tlsconftest.New(t, t.TempDir(), "mx", "mx.old.test", tlsconftest.ECDSA, w.ca, false)
	peer := startPeer(t, "127.0.0.23", port, srvCert, "smtpd_tls_protocols", "<=TLSv1.2")
	relay := relayOf("127.0.0.23", "127.0.0.23", port)
	a, ls := w.agent(t, map[string]string{"smtp_tls_security_level": "may", "smtp_tls_protocols": ">=TLSv1.3"})
	checkResult(t, deliver(t, a, request("[127.0.0.23]:"+port, msg, "a@old.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", relay)
	if l, ok := waitLog(ls, "SSL_connect error to "+relay); !ok || strings.Contains(l, "TLS connection established") {
		t.Errorf("log:\n%s", l)
	}
	a, _ = w.agent(t, map[string]string{"smtp_tls_security_level": "encrypt", "smtp_tls_mandatory_protocols": ">=TLSv1.3"})
	checkResult(t, deliver(t, a, request("[127.0.0.23]:"+port, msg, "b@old.test"))[0], queue.RcptDeferred, "4.7.5", "Cannot start TLS: handshake failure", relay)
	if n := peer.count(); n != 1 {
		t.Errorf("peer queued %d messages, want 1", n)
	}
}

// smtp_tls_cert_file is offered to a server that asks for a client
// certificate (the peer logs it as Trusted under its CA).
func TestOutboundTLSClientCert(t *testing.T) {
	w := newTLSWorld(t)
	dir := t.TempDir()
	port := smtpsink.FreePort(t, "127.0.0.24")
	srvCert := tlsconftest.New(t, dir, "mx", "mx.cc.test", tlsconftest.ECDSA, w.ca, false)
	cli := tlsconftest.New(t, dir, "cli", "client.example", tlsconftest.ECDSA, w.ca, false)
	peer := startPeer(t, "127.0.0.24", port, srvCert, "smtpd_tls_ask_ccert", "yes", "smtpd_tls_CAfile", w.ca.CertFile, "smtpd_tls_loglevel", "1")
	a, _ := w.agent(t, map[string]string{"smtp_tls_security_level": "encrypt", "smtp_tls_cert_file": cli.CertFile, "smtp_tls_key_file": cli.KeyFile})
	checkResult(t, deliver(t, a, request("[127.0.0.24]:"+port, msg, "a@cc.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", relayOf("127.0.0.24", "127.0.0.24", port))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	peer.log.Flush(ctx)
	if l := strings.Join(peer.logs.Lines(maillogtest.Text), "\n"); !strings.Contains(l, "Trusted TLS connection established from") {
		t.Errorf("peer log:\n%s", l)
	}
}
