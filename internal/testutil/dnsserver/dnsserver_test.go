package dnsserver

import (
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func ask(t *testing.T, s *Server, network, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), qtype)
	c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
	m, _, err := c.Exchange(q, s.Addr())
	if err != nil {
		t.Fatalf("%s %s: %v", name, mdns.TypeToString[qtype], err)
	}
	return m
}

func TestAnswers(t *testing.T) {
	s := Start(t,
		"a.example. 60 IN A 127.0.0.2",
		"deep.empty.example. IN TXT \"x\"",
		"*.wild.example. IN A 127.0.0.3",
		"alias.example. IN CNAME a.example.",
		"nullmx.example. IN MX 0 .",
	)
	cases := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers int
	}{
		{"a.example", mdns.TypeA, mdns.RcodeSuccess, 1},
		{"A.EXAMPLE", mdns.TypeA, mdns.RcodeSuccess, 1},
		{"a.example", mdns.TypeMX, mdns.RcodeSuccess, 0},       // NODATA
		{"empty.example", mdns.TypeA, mdns.RcodeSuccess, 0},    // empty non-terminal
		{"nx.example", mdns.TypeA, mdns.RcodeNameError, 0},     // NXDOMAIN
		{"x.y.wild.example", mdns.TypeA, mdns.RcodeSuccess, 1}, // wildcard
		{"x.wild.example", mdns.TypeTXT, mdns.RcodeSuccess, 0},
		{"alias.example", mdns.TypeA, mdns.RcodeSuccess, 2}, // CNAME + A
		{"nullmx.example", mdns.TypeMX, mdns.RcodeSuccess, 1},
	}
	for _, c := range cases {
		for _, network := range []string{"udp", "tcp"} {
			m := ask(t, s, network, c.name, c.qtype)
			if m.Rcode != c.rcode || len(m.Answer) != c.answers || !m.Authoritative {
				t.Errorf("%s %s over %s: rcode %d, %d answers, want %d, %d", c.name, mdns.TypeToString[c.qtype], network, m.Rcode, len(m.Answer), c.rcode, c.answers)
			}
		}
	}
	if m := ask(t, s, "udp", "x.y.wild.example", mdns.TypeA); len(m.Answer) == 1 && m.Answer[0].Header().Name != "x.y.wild.example." {
		t.Errorf("wildcard answer owner %s", m.Answer[0].Header().Name)
	}
	if n := s.Queries(); n != 2*len(cases)+1 {
		t.Errorf("Queries() = %d, want %d", n, 2*len(cases)+1)
	}
	s.Fail("a.example", mdns.RcodeServerFailure)
	if m := ask(t, s, "udp", "a.example", mdns.TypeA); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("Fail: rcode %d", m.Rcode)
	}
	s.Add("b.example. IN A 127.0.0.4")
	if m := ask(t, s, "udp", "b.example", mdns.TypeA); len(m.Answer) != 1 {
		t.Errorf("Add: %v", m)
	}
	s.Garble("garbled.example")
	if _, _, err := (&mdns.Client{Timeout: time.Second}).Exchange(q0("garbled.example"), s.Addr()); err == nil {
		t.Errorf("Garble: the reply parsed")
	}
	s.Delay("b.example", 300*time.Millisecond)
	q := new(mdns.Msg)
	q.SetQuestion("b.example.", mdns.TypeA)
	c := &mdns.Client{Timeout: 100 * time.Millisecond}
	if _, _, err := c.Exchange(q, s.Addr()); err == nil {
		t.Errorf("Delay: answered within the client's timeout")
	}
}

func q0(name string) *mdns.Msg {
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	return q
}

// Secure zones get the AD bit when the query asks (DO or AD), never
// otherwise; TLSA records parse from master-file lines.
func TestSecure(t *testing.T) {
	s := Start(t,
		"_25._tcp.mx.sec.example. IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"mx.sec.example. IN A 127.0.0.2",
		"mx.plain.example. IN A 127.0.0.3",
	)
	s.Secure("sec.example.")
	askDO := func(name string, qtype uint16, do bool) *mdns.Msg {
		q := new(mdns.Msg)
		q.SetQuestion(mdns.Fqdn(name), qtype)
		q.SetEdns0(1232, do)
		m, _, err := (&mdns.Client{Timeout: 2 * time.Second}).Exchange(q, s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := askDO("_25._tcp.mx.sec.example", mdns.TypeTLSA, true)
	if !m.AuthenticatedData || len(m.Answer) != 1 {
		t.Fatalf("TLSA: %v", m)
	}
	if tlsa, ok := m.Answer[0].(*mdns.TLSA); !ok || tlsa.Usage != 3 || tlsa.Selector != 1 || tlsa.MatchingType != 1 {
		t.Errorf("TLSA record %v", m.Answer[0])
	}
	if m := askDO("nx.sec.example", mdns.TypeA, true); !m.AuthenticatedData || m.Rcode != mdns.RcodeNameError {
		t.Errorf("secure NXDOMAIN: %v", m)
	}
	if m := askDO("mx.sec.example", mdns.TypeA, false); m.AuthenticatedData {
		t.Errorf("AD without DO: %v", m)
	}
	if m := askDO("mx.plain.example", mdns.TypeA, true); m.AuthenticatedData {
		t.Errorf("AD outside the secure names: %v", m)
	}
}
