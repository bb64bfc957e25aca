// Package anvil counts what smtpd's client limits need, for every smtpd
// process of the host at once: concurrent connections and the rates of
// connections, MAIL commands, RCPT commands, new TLS sessions and AUTH
// commands per (service, client address), over anvil_rate_time_unit
// (anvil(8), postconf(5) smtpd_client_*_limit).
//
// Table is the counting core. Serve runs it as the anvil service on a UNIX
// socket (master.cf "anvil unix - - y - 1 anvil") and Dial is the client
// each smtpd process holds; a *Table is also a Limiter for a server that
// runs in one process.
//
// Where moat departs from Postfix's anvil:
//   - The table has a hard size cap (Options.MaxEntries, least recently used
//     entry evicted first) besides Postfix's expiry of idle entries, so a
//     flood of distinct client addresses cannot grow it without bound. An
//     evicted entry that still had connections loses its count; its later
//     disconnects are ignored, as Postfix's anvil ignores a disconnect for an
//     unknown client.
//   - The wire protocol is a line protocol of moat's own (proto.go), not
//     Postfix's attribute protocol: only moat's smtpd talks to it.
package anvil

import (
	"container/list"
	"fmt"
	"sync"
	"time"
)

// DefaultMaxEntries caps the table when Options.MaxEntries is 0. Each entry
// stands for a client that completed a TCP handshake within the last rate
// time unit or still holds a connection, so this covers far more clients
// than one host serves at once, in a few megabytes.
const DefaultMaxEntries = 65536

// Limiter is what smtpd asks at each counted event; Table (in one process)
// and Client (across processes) implement it. Each method records the event
// and returns the counts after it, which the caller compares with its
// limits (the limits live in smtpd's configuration, not here, as in
// Postfix). An error means the counts are unknown: smtpd logs it and goes
// on without the limit (fail open), as Postfix's smtpd does when anvil
// does not answer.
type Limiter interface {
	// Connect records a new connection: count is the number of
	// connections now open, rate the connections within the time unit.
	Connect(service, addr string) (count, rate int, err error)
	// Disconnect records the end of a connection Connect counted.
	Disconnect(service, addr string) error
	// Mail records a MAIL FROM request and returns the message rate.
	Mail(service, addr string) (rate int, err error)
	// Rcpt records a RCPT TO request and returns the recipient rate.
	Rcpt(service, addr string) (rate int, err error)
	// NewTLS records a new (not resumed) TLS session and returns its rate.
	NewTLS(service, addr string) (rate int, err error)
	// NewTLSStatus returns the new-TLS-session rate without counting:
	// smtpd asks before the handshake and counts (NewTLS) only after a
	// handshake that did not resume a session, as Postfix's smtpd does.
	NewTLSStatus(service, addr string) (rate int, err error)
	// Auth records an AUTH request and returns its rate.
	Auth(service, addr string) (rate int, err error)
}

// Options tune a Table.
type Options struct {
	// Unit is anvil_rate_time_unit: rates count events since the start of
	// the current unit-long window. Zero means 60s.
	Unit time.Duration
	// MaxEntries caps the number of (service, address) entries; zero
	// means DefaultMaxEntries.
	MaxEntries int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Event names the counted events, in anvil(8)'s statistics order.
type Event int

// The events a Table counts.
const (
	EvConnect Event = iota
	EvMail
	EvRcpt
	EvNewTLS
	EvAuth
	numRates
)

// statName is the word anvil(8) logs for each rate.
var statName = [numRates]string{"connection", "message", "recipient", "newtls", "auth"}

// entry is one (service, address) client. All rates share one window, as
// in Postfix's anvil: when the window is older than the unit, every rate
// restarts at zero.
type entry struct {
	key   string
	conns int
	start time.Time
	rates [numRates]int
	seen  time.Time // last event, for expiry
}

// peak is one statistics maximum with the client and time it was reached.
type peak struct {
	value int
	key   string
	at    time.Time
}

// Table is the counting core, safe for concurrent use.
type Table struct {
	unit time.Duration
	max  int
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]*list.Element // of *entry
	lru     *list.List               // front: most recently used
	evicted int                      // entries dropped by the cap, for tests

	rateMax  [numRates]peak
	countMax peak
	sizeMax  peak
}

// NewTable makes an empty table.
func NewTable(o Options) *Table {
	if o.Unit <= 0 {
		o.Unit = 60 * time.Second
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Table{
		unit:    o.Unit,
		max:     o.MaxEntries,
		now:     o.Now,
		entries: map[string]*list.Element{},
		lru:     list.New(),
	}
}

// Key is the table key Postfix's anvil logs: "service:address".
func Key(service, addr string) string { return service + ":" + addr }

// Len reports the number of entries.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// Evicted reports how many entries the size cap has dropped.
func (t *Table) Evicted() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.evicted
}

// idle reports whether e counts nothing any more: no connection and a
// window older than the unit.
func (t *Table) idle(e *entry, now time.Time) bool {
	return e.conns <= 0 && now.Sub(e.start) >= t.unit
}

// get returns the entry for key, creating it, and marks it most recently
// used. Creating first expires idle entries at the cold end and then
// enforces the cap, so the table never holds more than max entries.
func (t *Table) get(key string, now time.Time) *entry {
	if el, ok := t.entries[key]; ok {
		t.lru.MoveToFront(el)
		e := el.Value.(*entry)
		e.seen = now
		return e
	}
	t.expire(now, expireScan)
	for len(t.entries) >= t.max {
		t.remove(t.victim())
		t.evicted++
	}
	e := &entry{key: key, start: now, seen: now}
	t.entries[key] = t.lru.PushFront(e)
	if n := len(t.entries); n > t.sizeMax.value {
		t.sizeMax = peak{value: n, at: now}
	}
	return e
}

// expireScan bounds the entries one new client examines for expiry, and
// the cold entries examined for a victim, so each event costs O(1).
const expireScan = 8

// victim picks the entry the cap evicts: the coldest without connections
// among the few coldest, else the coldest (whose concurrency count is then
// lost; a flood big enough to reach it has pushed every other out first).
func (t *Table) victim() *list.Element {
	el := t.lru.Back()
	for i, cand := 0, el; i < expireScan && cand != nil; i, cand = i+1, cand.Prev() {
		if cand.Value.(*entry).conns <= 0 {
			return cand
		}
	}
	return el
}

func (t *Table) remove(el *list.Element) {
	e := t.lru.Remove(el).(*entry)
	delete(t.entries, e.key)
}

// expire examines up to n entries from the cold end of the list (n < 0:
// no bound) and drops the idle ones. The list is ordered by last event, so
// the walk stops at the first entry touched within the unit: every entry
// in front of it is warmer. An entry that still holds connections is
// skipped, not dropped.
func (t *Table) expire(now time.Time, n int) {
	for el := t.lru.Back(); el != nil && n != 0; n-- {
		e := el.Value.(*entry)
		if now.Sub(e.seen) < t.unit {
			return
		}
		prev := el.Prev()
		if t.idle(e, now) {
			t.remove(el)
		}
		el = prev
	}
}

// Expire drops every idle entry at the cold end; the server calls it once
// per unit so that a quiet table shrinks without new events.
func (t *Table) Expire() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(t.now(), -1)
}

// bump counts one event of kind ev for key and returns the entry.
func (t *Table) bump(key string, ev Event) *entry {
	now := t.now()
	e := t.get(key, now)
	if now.Sub(e.start) >= t.unit {
		e.start = now
		e.rates = [numRates]int{}
	}
	if e.rates[ev] < maxCount {
		e.rates[ev]++
	}
	if p := &t.rateMax[ev]; e.rates[ev] > p.value {
		*p = peak{value: e.rates[ev], key: key, at: now}
	}
	return e
}

// maxCount keeps counters from wrapping, as Postfix's INT_MAX checks do.
const maxCount = 1 << 30

// Connect implements Limiter.
func (t *Table) Connect(service, addr string) (int, int, error) {
	key := Key(service, addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.bump(key, EvConnect)
	if e.conns < maxCount {
		e.conns++
	}
	if e.conns > t.countMax.value {
		t.countMax = peak{value: e.conns, key: key, at: e.seen}
	}
	return e.conns, e.rates[EvConnect], nil
}

// Disconnect implements Limiter. An unknown client (evicted, or counted
// by an anvil that has since restarted) is ignored.
func (t *Table) Disconnect(service, addr string) error {
	key := Key(service, addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.entries[key]
	if !ok {
		return nil
	}
	e := el.Value.(*entry)
	if e.conns > 0 {
		e.conns--
	}
	return nil
}

func (t *Table) rate(service, addr string, ev Event) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.bump(Key(service, addr), ev).rates[ev], nil
}

// Mail implements Limiter.
func (t *Table) Mail(service, addr string) (int, error) { return t.rate(service, addr, EvMail) }

// Rcpt implements Limiter.
func (t *Table) Rcpt(service, addr string) (int, error) { return t.rate(service, addr, EvRcpt) }

// NewTLS implements Limiter.
func (t *Table) NewTLS(service, addr string) (int, error) { return t.rate(service, addr, EvNewTLS) }

// NewTLSStatus implements Limiter. It neither creates the entry nor
// counts as use of it.
func (t *Table) NewTLSStatus(service, addr string) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.entries[Key(service, addr)]
	if !ok {
		return 0, nil
	}
	e := el.Value.(*entry)
	if t.now().Sub(e.start) >= t.unit {
		return 0, nil
	}
	return e.rates[EvNewTLS], nil
}

// Auth implements Limiter.
func (t *Table) Auth(service, addr string) (int, error) { return t.rate(service, addr, EvAuth) }

// Statistics returns anvil(8)'s periodic "statistics:" lines for the maxima
// since the last call, and resets them, as Postfix's anvil_status_dump
// does: a maximum that stayed zero is not logged. Times are local, in
// ctime's "Nov 22 19:47:01" form.
func (t *Table) Statistics() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	secs := int(t.unit / time.Second)
	var out []string
	stamp := func(at time.Time) string { return at.Format("Jan _2 15:04:05") }
	rate := func(ev Event) {
		if p := t.rateMax[ev]; p.value > 0 {
			out = append(out, fmt.Sprintf("statistics: max %s rate %d/%ds for (%s) at %s",
				statName[ev], p.value, secs, p.key, stamp(p.at)))
		}
		t.rateMax[ev] = peak{}
	}
	rate(EvConnect)
	if p := t.countMax; p.value > 0 {
		out = append(out, fmt.Sprintf("statistics: max connection count %d for (%s) at %s",
			p.value, p.key, stamp(p.at)))
	}
	t.countMax = peak{}
	for _, ev := range []Event{EvMail, EvRcpt, EvNewTLS, EvAuth} {
		rate(ev)
	}
	if p := t.sizeMax; p.value > 0 {
		out = append(out, fmt.Sprintf("statistics: max cache size %d at %s", p.value, stamp(p.at)))
	}
	t.sizeMax = peak{}
	return out
}
