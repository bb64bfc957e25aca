package qmgr

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/delivery"
	"moat/internal/queue"
)

// recorder is a delivery agent for these tests: it keeps every request it
// gets (recipients, next hop, content) and answers per recipient with
// answer(address), so the scheduler's grouping, limits and pass-ons can be
// checked through the real Agent interface.
type recorder struct {
	mu      sync.Mutex
	reqs    []recorded
	answer  func(addr string) delivery.Result
	running int
	peak    int
	hold    time.Duration
}

type recorded struct {
	service, nexthop string
	rcpts            []string
	orig             []string
	content          string
}

func (r *recorder) factory() AgentFactory {
	return func(d delivery.Deps) (delivery.Agent, error) {
		return &recorderAgent{r: r, service: d.Service}, nil
	}
}

type recorderAgent struct {
	r       *recorder
	service string
}

func (a *recorderAgent) Deliver(ctx context.Context, req *delivery.Request) []delivery.Result {
	r := a.r
	b, err := io.ReadAll(req.Content())
	if err != nil {
		panic(err) // a test agent; the queue file is intact
	}
	rec := recorded{service: a.service, nexthop: req.Nexthop, content: string(b)}
	for _, rc := range req.Recipients {
		rec.rcpts = append(rec.rcpts, rc.Address)
		rec.orig = append(rec.orig, rc.OrigAddress)
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.running++
	r.peak = max(r.peak, r.running)
	r.mu.Unlock()
	time.Sleep(r.hold)
	r.mu.Lock()
	r.running--
	r.mu.Unlock()
	var out []delivery.Result
	for _, rc := range req.Recipients {
		res := delivery.Result{State: queue.RcptDelivered, DSN: "2.0.0", Reason: "delivered via " + a.service, Relay: a.service}
		if r.answer != nil {
			res = r.answer(rc.Address)
		}
		res.Index = rc.Index
		out = append(out, res)
	}
	return out
}

func (a *recorderAgent) Close() error { return nil }

func (r *recorder) requests() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

const testMasterCF = `smtp      inet  n       -       n       -       -       smtpd
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
smtp      unix  -       -       n       -       -       smtp
discard   unix  -       -       n       -       -       discard
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
dovecot   unix  -       n       n       -       -       pipe
  flags=DRhu user=vmail argv=/usr/lib/dovecot/deliver -f ${sender} -d ${recipient}
`

// transport_maps overrides the address class (transport(5) search order:
// address, domain, .parent, *), recipients with the same transport and
// next hop share one request up to the recipient limit, and the agent gets
// the master.cf service name.
func TestTransportMapsAndGrouping(t *testing.T) {
	rec := &recorder{}
	dir := t.TempDir()
	tmap := filepath.Join(dir, "transport")
	if err := os.WriteFile(tmap, []byte(
		"special@example.com  dovecot:\n"+
			"example.com          lmtp:inet:127.0.0.1:24\n"+
			".sub.example.org     lmtp:unix:private/sub\n"+
			"*                    discard:wildcard\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, "transport_maps = texthash:"+tmap+"\nlmtp_destination_recipient_limit = 2\n",
		testMasterCF, map[string]AgentFactory{"lmtp": rec.factory(), "pipe": rec.factory()})
	id := e.put("s@example.org", "a@example.com", "b@example.com", "c@example.com",
		"special@example.com", "x@deep.sub.example.org", "y@elsewhere.test")
	e.start()
	e.waitFor("removal", 5*time.Second, func() bool { return e.gone(id) })
	got := map[string][][]string{}
	for _, r := range rec.requests() {
		got[r.service+" "+r.nexthop] = append(got[r.service+" "+r.nexthop], r.rcpts)
	}
	want := map[string][][]string{
		"lmtp inet:127.0.0.1:24": {{"a@example.com", "b@example.com"}, {"c@example.com"}},
		"dovecot example.com":    {{"special@example.com"}},
		"lmtp unix:private/sub":  {{"x@deep.sub.example.org"}},
	}
	for k, v := range want {
		if !slices.EqualFunc(got[k], v, slices.Equal) {
			t.Errorf("requests to %s = %v, want %v", k, got[k], v)
		}
	}
	e.wantLog(`^postfix/discard\[PID\]: ` + id + `: to=<y@elsewhere.test>, relay=none, .*status=sent \(wildcard\)$`)
	e.wantLog(`^postfix/pipe\[PID\]: ` + id + `: to=<special@example.com>, relay=dovecot, .*status=sent \(delivered via dovecot\)$`)
}

// transport(5) RESULT FORMAT: ":" changes nothing, "transport:" resets
// the next hop to the recipient domain, ":nexthop" keeps the transport.
func TestMergeTransport(t *testing.T) {
	def := route{transport: "smtp", nexthop: "[relay.example]"}
	for _, tt := range []struct {
		value string
		want  route
	}{
		{":", def},
		{"", def},
		{"lmtp:", route{"lmtp", "example.com"}},
		{":[other]:25", route{"smtp", "[other]:25"}},
		{"error:5.1.1 no such user", route{"error", "5.1.1 no such user"}},
	} {
		if got := mergeTransport(tt.value, def, "example.com"); got != tt.want {
			t.Errorf("mergeTransport(%q) = %+v, want %+v", tt.value, got, tt.want)
		}
	}
}

// An agent's pass-on (local(8)'s mailbox_transport) is delivered through
// the named transport in the same run, with the address the agent gives;
// a loop of pass-ons is cut off and deferred.
func TestPassOnAndLoop(t *testing.T) {
	rec := &recorder{}
	rec.answer = func(addr string) delivery.Result {
		switch {
		case strings.HasPrefix(addr, "loop"):
			return delivery.Result{Pass: "lmtp:unix:private/again"}
		case strings.HasSuffix(addr, "@mx.test"):
			return delivery.Result{Pass: "lmtp:unix:private/dovecot-lmtp", Address: "box-" + strings.TrimSuffix(addr, "mx.test") + "box.test"}
		}
		return delivery.Result{State: queue.RcptDelivered, DSN: "2.0.0", Reason: "250 2.0.0 Saved", Relay: "mx.test[private/dovecot-lmtp]"}
	}
	e := newEnvWith(t, "", testMasterCF, map[string]AgentFactory{"local": rec.factory(), "lmtp": rec.factory()})
	id := e.put("s@example.org", "u@mx.test", "loop@mx.test")
	e.start()
	e.waitFor("deferral", 5*time.Second, func() bool { return e.inQueue(queue.Deferred, id) })
	reqs := rec.requests()
	var lmtp []string
	for _, r := range reqs {
		if r.service == "lmtp" {
			lmtp = append(lmtp, r.nexthop+" "+r.rcpts[0]+" orig="+r.orig[0])
		}
	}
	if !slices.Contains(lmtp, "unix:private/dovecot-lmtp box-u@box.test orig=u@mx.test") {
		t.Errorf("lmtp requests = %q", lmtp)
	}
	e.wantLog(`^postfix/lmtp\[PID\]: ` + id + `: to=<u@mx.test>, relay=mx.test\[private/dovecot-lmtp\], .*status=sent \(250 2.0.0 Saved\)$`)
	e.wantLog(`^postfix/qmgr\[PID\]: ` + id + `: to=<loop@mx.test>, relay=none, .*status=deferred \(mail transport loop: lmtp passes to lmtp:unix:private/again\)$`)
}

// A transport master.cf does not define defers its mail ("mail transport
// unavailable", as Postfix's qmgr says), and one whose command has no agent
// in this version says so.
func TestUnknownTransportDefers(t *testing.T) {
	e := newEnvWith(t, "transport_maps = inline:{ nowhere.example=nosuch:, later.example=smtp: }\n", testMasterCF, nil)
	id := e.put("s@example.org", "a@nowhere.example", "b@later.example")
	e.start()
	e.waitFor("deferral", 5*time.Second, func() bool { return e.inQueue(queue.Deferred, id) })
	e.wantLog(`^postfix/qmgr\[PID\]: ` + id + `: to=<a@nowhere.example>, relay=none, .*dsn=4.3.0, status=deferred \(mail transport unavailable\)$`)
	e.wantLog(`^postfix/qmgr\[PID\]: ` + id + `: to=<b@later.example>, relay=none, .*status=deferred \(delivery via smtp is not available yet in this version of moat\)$`)
}

// The destination concurrency limit holds: with
// lmtp_destination_concurrency_limit = 2, no more than two requests to one
// next hop run at once, even with many messages waiting.
func TestDestinationConcurrencyLimit(t *testing.T) {
	rec := &recorder{hold: 50 * time.Millisecond}
	e := newEnvWith(t, "transport_maps = inline:{ example.com=lmtp:inet:127.0.0.1:24 }\nlmtp_destination_concurrency_limit = 2\n",
		testMasterCF, map[string]AgentFactory{"lmtp": rec.factory()})
	var ids []string
	for range 10 {
		ids = append(ids, e.put("s@example.org", "a@example.com"))
	}
	e.start()
	e.waitFor("removal", 10*time.Second, func() bool {
		for _, id := range ids {
			if !e.gone(id) {
				return false
			}
		}
		return true
	})
	rec.mu.Lock()
	peak := rec.peak
	rec.mu.Unlock()
	if peak > 2 || peak < 1 {
		t.Errorf("peak concurrency %d, want 1..2", peak)
	}
}

// A message older than maximal_queue_lifetime is returned to its sender
// after the attempt that defers it again: one "status=expired, returned
// to sender" line, the notice in the local sender's mailbox, the message
// gone.
func TestExpiredReturnedToSender(t *testing.T) {
	tmap := filepath.Join(t.TempDir(), "transport")
	if err := os.WriteFile(tmap, []byte("slow.example retry:4.4.1 try later\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, "maximal_queue_lifetime = 0\ntransport_maps = texthash:"+tmap+"\n", testMasterCF, nil)
	id := e.put("owner@mx.test", "x@slow.example")
	e.start()
	e.waitFor("removal", 5*time.Second, func() bool { return e.gone(id) })
	e.wantLog(`^postfix/error\[PID\]: ` + id + `: to=<x@slow.example>, relay=none, .*dsn=4.4.1, status=deferred \(try later\)$`)
	e.wantLog(`^postfix/qmgr\[PID\]: ` + id + `: from=<owner@mx.test>, status=expired, returned to sender$`)
	e.waitFor("notice", 5*time.Second, func() bool { return e.count("owner") == 1 })
	if body := e.readOne("owner"); !strings.Contains(body, "<x@slow.example>: try later") {
		t.Errorf("notice:\n%s", body)
	}
}

// An agent that cannot be built (a stock pipe row for software this host
// lacks) costs nothing until mail goes to it; then its mail is deferred
// and the reason logged once.
func TestBrokenAgentDefersItsMailOnly(t *testing.T) {
	broken := func(d delivery.Deps) (delivery.Agent, error) {
		return nil, errors.New("user=vmail: unknown user")
	}
	e := newEnvWith(t, "transport_maps = inline:{ box.example=dovecot: }\n", testMasterCF,
		map[string]AgentFactory{"pipe": broken})
	if strings.Contains(strings.Join(e.logs(), "\n"), "vmail") {
		t.Fatalf("agent built before use:\n%s", strings.Join(e.logs(), "\n"))
	}
	id := e.put("s@example.org", "a@box.example", "b@box.example", "u@mx.test")
	e.start()
	e.waitFor("deferral", 5*time.Second, func() bool { return e.inQueue(queue.Deferred, id) })
	e.wantLog(`^postfix/qmgr\[PID\]: warning: transport dovecot: user=vmail: unknown user; its mail is deferred until this is fixed$`)
	e.wantLog(`^postfix/qmgr\[PID\]: ` + id + `: to=<b@box.example>, relay=none, .*status=deferred \(mail transport unavailable\)$`)
	e.wantLog(`^postfix/local\[PID\]: ` + id + `: to=<u@mx.test>, relay=local, .*status=sent`)
	n := 0
	for _, l := range e.logs() {
		if strings.Contains(l, "warning: transport dovecot") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
}
