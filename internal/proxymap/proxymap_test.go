package proxymap

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/config/configtest"
	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/proxymap/wire"
)

// TestApprovedTables follows Postfix's rule for proxy_read_maps: only
// "proxy:" words count, repeated prefixes are stripped, { } groups stand
// for their first word, and anything without type:name is ignored.
func TestApprovedTables(t *testing.T) {
	var warned []string
	warn := func(format string, args ...any) { warned = append(warned, fmt.Sprintf(format, args...)) }
	got := approvedTables("proxy:unix:passwd.byname hash:/etc/aliases, example.com "+
		"permit_mynetworks check_client_access proxy:proxy:cidr:/c.cidr proxy:nocolon "+
		"{ proxy:texthash:/t option=1 } proxy:inline:{ a=b, c=d } { proxy:hash:/unclosed",
		"proxy_read_maps", warn)
	var names []string
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"cidr:/c.cidr", "inline:{ a=b, c=d }", "texthash:/t", "unix:passwd.byname"}
	if !slices.Equal(names, want) {
		t.Errorf("approved %q, want %q", names, want)
	}
	if len(warned) != 1 || !strings.HasPrefix(warned[0], "bad proxy_read_maps parameter value: missing '}'") {
		t.Errorf("warnings %q", warned)
	}
}

// TestDefaultApproval: with Postfix's default proxy_read_maps, a proxy:
// table named in any of the listed parameters is approved — the seed's
// local_recipient_maps, a restriction's access map — and nothing else.
func TestDefaultApproval(t *testing.T) {
	f := startServer(t, t.TempDir(), "local_recipient_maps = proxy:unix:passwd.byname $alias_maps\n"+
		"smtpd_recipient_restrictions = check_recipient_access proxy:inline:{ x@y=REJECT }, reject_unauth_destination\n"+
		"virtual_alias_maps = texthash:/not/proxied\n")
	for _, n := range []string{"unix:passwd.byname", "inline:{ x@y=REJECT }"} {
		if !f.srv.approved[n] {
			t.Errorf("%s not approved; approved: %v", n, f.srv.approved)
		}
	}
	if len(f.srv.approved) != 2 {
		t.Errorf("approved %v, want exactly two tables", f.srv.approved)
	}
}

// TestLookupAndRefusal: an approved table answers, missing keys are not
// errors, an unapproved table is refused with Postfix's two warnings and
// the client gets a temporary failure naming the table.
func TestLookupAndRefusal(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "virtual")
	writeTable(t, tab, "Alice@Example.com alice\nbob@example.com bob\n")
	f := startServer(t, dir, "virtual_alias_maps = proxy:texthash:"+tab+"\n")
	c := f.client("proxy:texthash:" + tab)
	// Keys are folded as the client asked (DefaultOptions folds).
	if v, ok, err := c.Lookup("ALICE@example.COM"); err != nil || !ok || v != "alice" {
		t.Errorf("alice: %q %v %v", v, ok, err)
	}
	if v, ok, err := c.Lookup("carol@example.com"); err != nil || ok || v != "" {
		t.Errorf("carol: %q %v %v", v, ok, err)
	}
	if c.Pattern() {
		t.Error("texthash reported as a pattern table")
	}

	// unix:passwd.byname is approved by default (local_recipient_maps).
	denied := f.client("proxy:unix:group.byname")
	_, _, err := denied.Lookup("root")
	if err == nil || !strings.Contains(err.Error(), `proxymap service is not configured for table "unix:group.byname"`) {
		t.Errorf("unapproved lookup: %v", err)
	}
	for _, line := range []string{
		`warning: request for unapproved table: "unix:group.byname"`,
		`warning: to approve this table for read-only access, list proxy:unix:group.byname in main.cf:proxy_read_maps`,
	} {
		if !f.log.has(line) {
			t.Errorf("log lacks %q; log:\n%s", line, f.log)
		}
	}
	// The refusal is remembered: a second lookup does not ask again.
	before := strings.Count(f.log.String(), "unapproved")
	_, _, err = denied.Lookup("postfix")
	if err == nil {
		t.Error("second unapproved lookup succeeded")
	}
	time.Sleep(50 * time.Millisecond)
	if after := strings.Count(f.log.String(), "unapproved"); after != before {
		t.Errorf("second refusal logged again (%d → %d)", before, after)
	}
}

// TestPatternKind: Pattern reports the inner table's kind as the server
// opened it, so access(5) lookups through the proxy keep pattern semantics.
func TestPatternKind(t *testing.T) {
	dir := t.TempDir()
	re := filepath.Join(dir, "checks")
	writeTable(t, re, "/^spam/ REJECT\n")
	cidr := filepath.Join(dir, "nets")
	writeTable(t, cidr, "10.0.0.0/8 OK\n")
	f := startServer(t, dir, "header_checks = proxy:regexp:"+re+"\nmynetworks = proxy:cidr:"+cidr+"\n")
	r := f.client("proxy:regexp:" + re)
	if !r.Pattern() {
		t.Error("regexp through proxy is not a pattern table")
	}
	if v, ok, err := r.Lookup("spamalot"); err != nil || !ok || v != "REJECT" {
		t.Errorf("regexp lookup: %q %v %v", v, ok, err)
	}
	n := f.client("proxy:cidr:" + cidr)
	if v, ok, err := n.Lookup("10.1.2.3"); err != nil || !ok || v != "OK" || !n.Pattern() {
		t.Errorf("cidr lookup: %q %v %v pattern=%v", v, ok, err, n.Pattern())
	}
}

// TestOneOpenServesAll: many clients of one table share one open
// instance, and an open failure is a temporary error, not a refusal.
func TestOneOpenServesAll(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "t")
	writeTable(t, tab, "k v\n")
	missing := filepath.Join(dir, "missing")
	f := startServer(t, dir, "transport_maps = proxy:texthash:"+tab+" proxy:texthash:"+missing+"\n")
	for i := range 5 {
		c := f.client("proxy:texthash:" + tab)
		if v, ok, err := c.Lookup("k"); err != nil || !ok || v != "v" {
			t.Fatalf("client %d: %q %v %v", i, v, ok, err)
		}
	}
	if n := f.srv.opens.Load(); n != 1 {
		t.Errorf("table opened %d times for 5 clients", n)
	}
	_, _, err := f.client("proxy:texthash:" + missing).Lookup("k")
	if err == nil || !strings.Contains(err.Error(), "lookup failed") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing table: %v", err)
	}
}

// TestReopenOnChange: a texthash file replaced or edited is reopened and
// the next lookups see the new contents, and it is logged.
func TestReopenOnChange(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "t")
	writeTable(t, tab, "k old\n")
	f := startServer(t, dir, "transport_maps = proxy:texthash:"+tab+"\n")
	c := f.client("proxy:texthash:" + tab)
	if v, _, err := c.Lookup("k"); err != nil || v != "old" {
		t.Fatalf("before: %q %v", v, err)
	}
	writeTable(t, tab, "k new and longer\n")
	if v, _, err := c.Lookup("k"); err != nil || v != "new and longer" {
		t.Fatalf("after: %q %v", v, err)
	}
	if !f.log.has("info: table texthash:" + tab + " has changed -- reopening") {
		t.Errorf("reopen not logged:\n%s", f.log)
	}
}

// TestWritesRefused: proxywrite-style requests get Postfix's refusal.
func TestWritesRefused(t *testing.T) {
	f := startServer(t, t.TempDir(), "")
	for _, op := range []wire.Op{wire.OpUpdate, wire.OpDelete} {
		rep := f.srv.handle(wire.Request{Op: op, Table: "hash:/x", Key: "k", Value: "v"})
		if rep.Status != wire.StatusDeny {
			t.Errorf("%s: %v", op, rep.Status)
		}
		line := fmt.Sprintf("warning: refusing hash:/x %s request on non-proxywrite service", op)
		if !f.log.has(line) {
			t.Errorf("log lacks %q:\n%s", line, f.log)
		}
	}
	if rep := f.srv.handle(wire.Request{Op: 'Z', Table: "hash:/x"}); rep.Status != wire.StatusBad {
		t.Errorf("unknown op: %v", rep.Status)
	}
	if rep := f.srv.handle(wire.Request{Op: wire.OpLookup, Table: "proxy:nocolon"}); rep.Status != wire.StatusBad {
		t.Errorf("table without type: %v", rep.Status)
	}
}

// TestReconnect: a server restart between lookups costs the client one
// reconnect, not an error; a server that is gone is a temporary failure.
func TestReconnect(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "t")
	writeTable(t, tab, "k v\n")
	f := startServer(t, dir, "transport_maps = proxy:texthash:"+tab+"\n")
	c := f.client("proxy:texthash:" + tab)
	if _, ok, err := c.Lookup("k"); err != nil || !ok {
		t.Fatalf("first: %v %v", ok, err)
	}
	f.stop()
	if _, _, err := c.Lookup("k"); err == nil {
		t.Fatal("lookup with the server down succeeded")
	}
	f.listen()
	if v, ok, err := c.Lookup("k"); err != nil || !ok || v != "v" {
		t.Fatalf("after restart: %q %v %v", v, ok, err)
	}
	// Idle connection broken by a restart while the client holds it.
	f.stop()
	f.listen()
	if v, ok, err := c.Lookup("k"); err != nil || !ok || v != "v" {
		t.Fatalf("after second restart: %q %v %v", v, ok, err)
	}
}

// TestConcurrentLookups: 50 goroutines × 1000 lookups through one client
// table, each checking its answer.
func TestConcurrentLookups(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "t")
	var b strings.Builder
	for i := range 200 {
		fmt.Fprintf(&b, "user%d@example.com box%d\n", i, i)
	}
	writeTable(t, tab, b.String())
	f := startServer(t, dir, "virtual_mailbox_maps = proxy:texthash:"+tab+"\n")
	c := f.client("proxy:texthash:" + tab)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	start := time.Now()
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				n := (g*1000 + i) % 250 // 200..249 are absent
				v, ok, err := c.Lookup(fmt.Sprintf("user%d@example.com", n))
				want := fmt.Sprintf("box%d", n)
				if err != nil || ok != (n < 200) || (ok && v != want) {
					errs <- fmt.Errorf("goroutine %d lookup %d (user%d): %q %v %v", g, i, n, v, ok, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("50000 lookups in %v", time.Since(start))
	if n := f.srv.opens.Load(); n != 1 {
		t.Errorf("table opened %d times", n)
	}
}

// TestDirectWithoutSocket: without ProxySocket, proxy: opens the inner
// table in process (postmap -q, an unjailed daemon).
func TestDirectWithoutSocket(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "t")
	writeTable(t, tab, "k v\n")
	tb, err := maps.Open("proxy:proxy:texthash:"+tab, maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	if v, ok, err := tb.Lookup("K"); err != nil || !ok || v != "v" {
		t.Errorf("%q %v %v", v, ok, err)
	}
}

// TestVerboseAllowlisting: in verbose mode each approved table is logged
// at start, with Postfix's text.
func TestVerboseAllowlisting(t *testing.T) {
	cfg := configtest.Load(t, "local_recipient_maps = proxy:unix:passwd.byname\n")
	sink := &logSink{}
	log := maillog.New(maillog.Options{Sink: sink, Fallback: sink, SyslogName: "postfix", Daemon: "proxymap", PID: 1})
	defer log.Close(context.Background())
	if _, err := newServer(cfg, log.WithVerbose(1)); err != nil {
		t.Fatal(err)
	}
	if !sink.has("info: allowlisting unix:passwd.byname from proxy_read_maps") {
		t.Errorf("log:\n%s", sink)
	}
}

// TestIdleConnectionsClosed: a client hangs up connections it has not
// used for ipc_idle (5s), so the server's descriptors follow the load, not
// the number of processes; the next lookup simply reconnects.
func TestIdleConnectionsClosed(t *testing.T) {
	dir := t.TempDir()
	tab := filepath.Join(dir, "t")
	writeTable(t, tab, "k v\n")
	f := startServer(t, dir, "transport_maps = proxy:texthash:"+tab+"\n")
	c := f.client("proxy:texthash:" + tab)
	if _, ok, err := c.Lookup("k"); err != nil || !ok {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	conns := func() int {
		f.srv.mu.Lock()
		defer f.srv.mu.Unlock()
		return len(f.srv.conns)
	}
	if n := conns(); n != 1 {
		t.Fatalf("%d server connections after a lookup, want 1", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for conns() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle connection still open after 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v, ok, err := c.Lookup("k"); err != nil || !ok || v != "v" {
		t.Fatalf("lookup after idle close: %q %v %v", v, ok, err)
	}
}
