// Package dnsserver is an authoritative DNS server on loopback for tests:
// moat's rule is that DNS behaviour is tested against a real server
// speaking the protocol over UDP and TCP, never a faked resolver. Tests
// give it RFC 1035 master-file lines and point dns_servers at Addr.
package dnsserver

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// Server answers authoritatively from the records it was given: NXDOMAIN
// for a name with no records and no descendants, NODATA (NOERROR, empty
// answer) for a name that exists without the asked type, RFC 4592
// wildcards ("*.x" stands for any name below x that does not exist), and
// CNAMEs chased within its own data.
type Server struct {
	t    testing.TB
	addr string
	udp  *mdns.Server
	tcp  *mdns.Server

	mu      sync.Mutex
	rrs     map[string][]mdns.RR // lower-case FQDN owner → records
	fail    map[string]int
	delay   map[string]time.Duration
	garble  map[string]bool
	secure  map[string]bool
	queries int
}

// Start runs a server on 127.0.0.1 (UDP and TCP on one free port) with
// records, and stops it when the test ends. A record that does not parse
// fails the test.
func Start(t testing.TB, records ...string) *Server {
	t.Helper()
	s := &Server{
		t:      t,
		rrs:    map[string][]mdns.RR{},
		fail:   map[string]int{},
		delay:  map[string]time.Duration{},
		garble: map[string]bool{},
		secure: map[string]bool{},
	}
	s.Add(records...)
	var pc net.PacketConn
	var ln net.Listener
	// UDP and TCP must share the port; another test may take the TCP side
	// first, so try a few ports.
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnsserver: %v", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatalf("dnsserver: no port free for both UDP and TCP: %v", err)
		}
	}
	s.addr = pc.LocalAddr().String()
	h := mdns.HandlerFunc(s.serve)
	started := make(chan struct{}, 2)
	s.udp = &mdns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { started <- struct{}{} }}
	s.tcp = &mdns.Server{Listener: ln, Handler: h, NotifyStartedFunc: func() { started <- struct{}{} }}
	for _, srv := range []*mdns.Server{s.udp, s.tcp} {
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				t.Logf("dnsserver: %v", err)
			}
		}()
	}
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatalf("dnsserver: did not start")
		}
	}
	t.Cleanup(func() {
		_ = s.udp.Shutdown()
		_ = s.tcp.Shutdown()
	})
	return s
}

// Addr is the server's "127.0.0.1:port", for dns_servers.
func (s *Server) Addr() string { return s.addr }

// Add adds records (master-file lines; a missing TTL is 3600, a relative
// name is taken as absolute). A line that does not parse fails the test.
func (s *Server) Add(records ...string) {
	s.t.Helper()
	for _, line := range records {
		rr, err := mdns.NewRR(line)
		if err != nil {
			s.t.Fatalf("dnsserver: record %q: %v", line, err)
		}
		if rr == nil {
			continue
		}
		h := rr.Header()
		h.Name = strings.ToLower(mdns.Fqdn(h.Name))
		s.mu.Lock()
		s.rrs[h.Name] = append(s.rrs[h.Name], rr)
		s.mu.Unlock()
	}
}

// Fail makes the server answer every question about name with rcode (for
// example mdns.RcodeServerFailure), whatever its records.
func (s *Server) Fail(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[strings.ToLower(mdns.Fqdn(name))] = rcode
}

// Delay makes the server wait d before answering questions about name,
// for timeout tests.
func (s *Server) Delay(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay[strings.ToLower(mdns.Fqdn(name))] = d
}

// Garble makes the server answer questions about name with a reply cut
// short in its question section, which no client can parse (for
// malformed-reply tests).
func (s *Server) Garble(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.garble[strings.ToLower(mdns.Fqdn(name))] = true
}

// Secure marks names, and every name below them, as DNSSEC-signed zones:
// the server then plays the validating resolver moat trusts (RFC 6840
// section 5.7) and sets the AD bit on answers about them when the query
// asks with the DO or AD bit, for DANE tests (RFC 7672 section 2.1.1).
// An answer whose CNAME chain leaves the secure names is not marked.
func (s *Server) Secure(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.secure[strings.ToLower(mdns.Fqdn(n))] = true
	}
}

// isSecure reports whether name is at or below a Secure name. Called with
// s.mu held.
func (s *Server) isSecure(name string) bool {
	labels := mdns.SplitDomainName(name)
	for i := range labels {
		if s.secure[mdns.Fqdn(strings.Join(labels[i:], "."))] {
			return true
		}
	}
	return s.secure["."]
}

// Queries counts the questions the server has answered (or started to
// answer), so tests can see a cache at work.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func (s *Server) serve(w mdns.ResponseWriter, req *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = mdns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	s.queries++
	d := s.delay[name]
	rcode, failing := s.fail[name]
	garbled := s.garble[name]
	s.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
	if failing {
		m.Rcode = rcode
		_ = w.WriteMsg(m)
		return
	}
	if garbled {
		if p, err := m.Pack(); err == nil && len(p) > 3 {
			_, _ = w.Write(p[:len(p)-3])
		}
		return
	}
	m.Answer, m.Rcode = s.answer(name, q.Qtype)
	do := req.IsEdns0() != nil && req.IsEdns0().Do()
	if do || req.AuthenticatedData {
		m.AuthenticatedData = s.chainSecure(name, m.Answer)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := 512
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
			m.SetEdns0(o.UDPSize(), do)
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// chainSecure reports whether name and every CNAME target in answer are
// Secure.
func (s *Server) chainSecure(name string, answer []mdns.RR) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isSecure(name) {
		return false
	}
	for _, rr := range answer {
		if c, ok := rr.(*mdns.CNAME); ok && !s.isSecure(strings.ToLower(c.Target)) {
			return false
		}
	}
	return true
}

// answer looks name/qtype up in the data, chasing CNAMEs.
func (s *Server) answer(name string, qtype uint16) ([]mdns.RR, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []mdns.RR
	for hop := 0; hop < 10; hop++ {
		rrs, exists := s.find(name)
		if !exists {
			if hop > 0 {
				return out, mdns.RcodeSuccess
			}
			return nil, mdns.RcodeNameError
		}
		var cname *mdns.CNAME
		for _, rr := range rrs {
			if rr.Header().Rrtype == qtype || qtype == mdns.TypeANY {
				out = append(out, rr)
			} else if c, ok := rr.(*mdns.CNAME); ok {
				cname = c
			}
		}
		if len(out) > 0 || cname == nil || qtype == mdns.TypeCNAME {
			return out, mdns.RcodeSuccess
		}
		out = append(out, cname)
		name = strings.ToLower(cname.Target)
	}
	return out, mdns.RcodeSuccess
}

// find returns name's records (copied onto name when they come from a
// wildcard) and whether the name exists. Called with s.mu held.
func (s *Server) find(name string) ([]mdns.RR, bool) {
	if rrs, ok := s.rrs[name]; ok {
		return rrs, true
	}
	if s.hasDescendant(name) {
		return nil, true
	}
	// RFC 4592 section 3.3.1: the closest encloser's wildcard applies to
	// names that do not exist; walk up to the first ancestor that exists
	// and use its "*" child.
	labels := mdns.SplitDomainName(name)
	for i := 1; i <= len(labels); i++ {
		parent := mdns.Fqdn(strings.Join(labels[i:], "."))
		if i == len(labels) {
			parent = "."
		}
		wild := "*." + parent
		if parent == "." {
			wild = "*."
		}
		if rrs, ok := s.rrs[wild]; ok {
			out := make([]mdns.RR, 0, len(rrs))
			for _, rr := range rrs {
				c := mdns.Copy(rr)
				c.Header().Name = name
				out = append(out, c)
			}
			return out, true
		}
		if _, ok := s.rrs[parent]; ok || s.hasDescendant(parent) {
			// parent is the closest encloser and has no wildcard.
			return nil, false
		}
	}
	return nil, false
}

// hasDescendant reports whether some record's owner is below name (an
// empty non-terminal exists, RFC 8020).
func (s *Server) hasDescendant(name string) bool {
	suffix := "." + name
	if name == "." {
		suffix = "."
	}
	for owner := range s.rrs {
		if owner != name && strings.HasSuffix(owner, suffix) {
			return true
		}
	}
	return false
}
