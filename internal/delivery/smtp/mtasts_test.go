package smtp

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"moat/internal/mtasts"
	"moat/internal/queue"
	"moat/internal/tlsconf/tlsconftest"
)

// stsWorld is the TLS world with MTA-STS policies served over HTTPS on
// 127.0.0.1 for tls.test, plain.test, alias.test and testing.test (whose
// MX is mx.tls.test), each with the body publish sets.
type stsWorld struct {
	*tlsWorld
	port     int
	mu       sync.Mutex
	policies map[string]string
}

func newSTSWorld(t *testing.T) *stsWorld {
	t.Helper()
	w := &stsWorld{tlsWorld: newTLSWorld(t), policies: map[string]string{}}
	var names []string
	for _, d := range []string{"tls.test", "plain.test", "alias.test", "testing.test"} {
		names = append(names, "mta-sts."+d)
	}
	// A certificate of its own for each policy host, signed by the
	// test CA the MTA-STS source trusts.
	certs := map[string]tls.Certificate{}
	for _, n := range names {
		c := tlsconftest.New(t, w.tmp, n, n, tlsconftest.ECDSA, w.ca, false)
		p, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		certs[n] = p
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		host, _, _ := strings.Cut(r.Host, ":")
		w.mu.Lock()
		body, ok := w.policies[strings.TrimPrefix(host, "mta-sts.")]
		w.mu.Unlock()
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		rw.Write([]byte(body))
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.TLS = &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := certs[h.ServerName]
		return &c, nil
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	w.port = ln.Addr().(*net.TCPAddr).Port
	return w
}

// publish serves policy for domain and publishes its TXT record with id.
func (w *stsWorld) publish(t *testing.T, domain, id, policy string) {
	t.Helper()
	w.mu.Lock()
	w.policies[domain] = policy
	w.mu.Unlock()
	w.dnsSrv.Add("_mta-sts."+domain+". IN TXT \"v=STSv1; id="+id+"\"", "mta-sts."+domain+". IN A 127.0.0.1")
}

// stsAgent is an agent of the world with an MTA-STS source that fetches
// from the world's HTTPS port (443 is the only port RFC 8461 allows,
// hence the test-only Options.Port rather than a parameter).
func (w *stsWorld) stsAgent(t *testing.T, over map[string]string) (*Agent, func() string) {
	t.Helper()
	a, ls := w.agent(t, over)
	src, err := mtasts.New(mtasts.Options{Resolver: a.resolver, CAFile: w.ca.CertFile, Port: w.port, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a.sts = src
	return a, func() string { return logLines(ls) }
}

func TestMTASTS(t *testing.T) {
	w := newSTSWorld(t)
	relay := relayOf("mx.tls.test", "127.0.0.21", w.tlsWorld.port)
	plainRelay := relayOf("mx.plain.test", "127.0.0.22", w.tlsWorld.port)
	w.publish(t, "tls.test", "1", "version: STSv1\nmode: enforce\nmx: *.tls.test\nmax_age: 86400\n")
	w.publish(t, "plain.test", "1", "version: STSv1\nmode: enforce\nmx: mx.plain.test\nmax_age: 86400\n")
	w.publish(t, "alias.test", "1", "version: STSv1\nmode: enforce\nmx: mx.other.test\nmax_age: 86400\n")

	// enforce raises "none" to a verified session with the MX host name.
	a, logs := w.stsAgent(t, map[string]string{"smtp_tls_security_level": "none"})
	checkResult(t, deliver(t, a, request("tls.test", msg, "a@tls.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", relay)
	if !logHas(logs, "Verified TLS connection established to "+relay) {
		l := logs()
		t.Errorf("enforce log:\n%s", l)
	}
	n, np := w.tlsPeer.count(), w.plainPeer.count()
	// A listed MX host without STARTTLS: deferred, never in clear.
	checkResult(t, deliver(t, a, request("plain.test", msg, "b@plain.test"))[0], queue.RcptDeferred, "4.7.4", "TLS is required*", plainRelay)
	// An MX host the policy does not list: skipped, nothing sent.
	r := deliver(t, a, request("alias.test", msg, "c@alias.test"))[0]
	if r.State != queue.RcptDeferred || r.DSN != "4.7.5" || !strings.Contains(r.Reason, "MTA-STS policy for alias.test does not list MX host mx.tls.test") {
		t.Errorf("unlisted MX: %+v", r)
	}
	// A certificate the trusted roots do not vouch for: deferred.
	other := tlsconftest.New(t, t.TempDir(), "other", "Other CA", tlsconftest.ECDSA, nil, true)
	b, _ := w.stsAgent(t, map[string]string{"smtp_tls_security_level": "may", "smtp_tls_CAfile": other.CertFile})
	checkResult(t, deliver(t, b, request("tls.test", msg, "d@tls.test"))[0], queue.RcptDeferred, "4.7.5", "Server certificate not trusted", relay)
	if w.tlsPeer.count() != n || w.plainPeer.count() != np {
		t.Errorf("refused deliveries reached a peer: %d, %d", w.tlsPeer.count()-n, w.plainPeer.count()-np)
	}

	// An smtp_tls_policy_maps entry is the admin's word: MTA-STS does not
	// override it.
	tbl := filepath.Join(w.tmp, "tls_policy")
	if err := os.WriteFile(tbl, []byte("alias.test may\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := w.stsAgent(t, map[string]string{"smtp_tls_policy_maps": "texthash:" + tbl})
	checkResult(t, deliver(t, c, request("alias.test", msg, "e@alias.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", relay)

	// testing mode: delivered as without a policy, the unlisted host logged.
	w.dnsSrv.Add("testing.test. IN MX 10 mx.tls.test.")
	w.publish(t, "testing.test", "1", "version: STSv1\nmode: testing\nmx: mx.other.test\nmax_age: 86400\n")
	d, logs := w.stsAgent(t, nil)
	checkResult(t, deliver(t, d, request("testing.test", msg, "f@testing.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", relay)
	if !logHas(logs, "MTA-STS policy (mode testing) for testing.test does not list MX host mx.tls.test") {
		l := logs()
		t.Errorf("testing log:\n%s", l)
	}
	// A relayhost-style [host] next hop is not an MX domain: no policy.
	checkResult(t, deliver(t, a, request("[mx.plain.test]", msg, "g@plain.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", plainRelay)
}
