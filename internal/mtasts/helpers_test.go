package mtasts

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"moat/internal/dns"
	"moat/internal/testutil/dnsserver"
	"moat/internal/tlsconf/tlsconftest"
)

// policyServer is a real HTTPS server answering for mta-sts.example.test
// with a certificate from a test CA, serving what the test sets.
type policyServer struct {
	srv    *httptest.Server
	caFile string
	port   int

	mu          sync.Mutex
	body        string
	contentType string
	status      int
	location    string
	hits        int
}

func (p *policyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hits++
	if r.URL.Path != "/.well-known/mta-sts.txt" {
		http.NotFound(w, r)
		return
	}
	if p.location != "" {
		w.Header().Set("Location", p.location)
	}
	w.Header().Set("Content-Type", p.contentType)
	w.WriteHeader(p.status)
	_, _ = w.Write([]byte(p.body))
}

// set changes what the server answers.
func (p *policyServer) set(status int, contentType, body string) {
	p.mu.Lock()
	p.status, p.contentType, p.body = status, contentType, body
	p.mu.Unlock()
}

func (p *policyServer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits
}

// startPolicyServer runs the HTTPS server on a loopback ":0" port with a
// certificate for certName signed by a fresh test CA.
func startPolicyServer(t *testing.T, certName, body string) *policyServer {
	t.Helper()
	dir := t.TempDir()
	ca := tlsconftest.New(t, dir, "ca", "moat MTA-STS test CA", tlsconftest.ECDSA, nil, true)
	leaf := tlsconftest.New(t, dir, "web", certName, tlsconftest.ECDSA, ca, false)
	cert, err := tls.LoadX509KeyPair(leaf.CertFile, leaf.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	p := &policyServer{caFile: ca.CertFile, status: http.StatusOK, contentType: "text/plain; charset=utf-8", body: body}
	p.srv = httptest.NewUnstartedServer(p)
	p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	// Handshakes the tests make fail on purpose are not news.
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	_, port, _ := net.SplitHostPort(p.srv.Listener.Addr().String())
	p.port, _ = strconv.Atoi(port)
	return p
}

// startDNS runs a loopback DNS server with records plus the policy host's
// address, and a resolver asking it.
func startDNS(t *testing.T, records ...string) (*dnsserver.Server, *dns.Resolver) {
	t.Helper()
	records = append(records, "mta-sts.example.test. IN A 127.0.0.1")
	d := dnsserver.Start(t, records...)
	r, err := dns.New(dns.Options{Servers: []string{d.Addr()}, IPv4: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return d, r
}

// clock is a test's settable clock for max_age.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newSource makes a Source for the test servers, with cacheDir and the
// test clock.
func newSource(t *testing.T, r *dns.Resolver, ps *policyServer, cacheDir string, c *clock) *Source {
	t.Helper()
	o := Options{Resolver: r, CacheDir: cacheDir, CAFile: ps.caFile, Port: ps.port, Timeout: 5 * time.Second,
		Warn: func(s string) { t.Logf("warning: %s", s) }}
	if c != nil {
		o.Now = c.Now
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func lookup(t *testing.T, s *Source, domain string) (*Policy, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return s.Lookup(ctx, domain)
}

const enforcePolicy = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmx: *.mx.example.test\r\nmax_age: 86400\r\n"
