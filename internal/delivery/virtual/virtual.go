// Package virtual is moat's virtual(8) delivery agent: mailboxes for
// domains that have no UNIX accounts (virtual_mailbox_domains), found in
// virtual_mailbox_maps under virtual_mailbox_base, owned by the uid and gid
// that virtual_uid_maps and virtual_gid_maps give, written as Maildir (a
// path ending in "/") or as an mbox file.
//
// Every write runs in a short-lived child with the mailbox owner's uid and
// gid (internal/delivery/asuser), where Postfix's virtual(8) switches its
// effective ids around the write.
//
// Differences from Postfix, each on purpose:
//
//   - A virtual_mailbox_maps value with a ".." component (or a NUL, or
//     naming virtual_mailbox_base itself) is refused: deferred 4.3.5
//     "mail system configuration error" with a warning. Postfix
//     concatenates the base and the value unchecked.
//   - A mailbox that is not a regular file fails with local(8)'s
//     "destination PATH is not a regular file" (5.2.0) where virtual(8)
//     says 5.3.5 "mail system configuration error".
//   - A delivery child that crashes, or a delivery cut short by the
//     queue manager, defers with 4.3.0 "delivery child failed: ...", a
//     case Postfix (no child) does not have.
//   - Address verification (sendmail -bv, DEL_REQ_TRACE_ONLY) is not a
//     request kind yet; every request delivers.
package virtual

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/asuser"
	"moat/internal/delivery/maildir"
	"moat/internal/delivery/mbox"
	"moat/internal/maps"
	"moat/internal/queue"
	"moat/internal/rewrite"
)

// Agent delivers to virtual mailboxes. It is safe for concurrent use: its
// tables are read-only after New and each delivery has its own child.
type Agent struct {
	d            delivery.Deps
	base         string
	mailboxMaps  *rewrite.Maps
	uidMaps      *rewrite.Maps
	gidMaps      *rewrite.Maps
	finder       *rewrite.Finder
	minUID       int64
	limit        int64
	origRcpt     bool
	lock         lockStyle
	lockAttempts int
	lockDelay    time.Duration
	staleLock    time.Duration
	// run writes the mailboxes with the mailbox owner's ids, here or in
	// the root executor.
	run *asuser.Runner
}

// lockStyle is a parsed virtual_mailbox_lock (mbox_lock_mask(3)).
type lockStyle struct{ fcntl, flock, dotlock bool }

// parseLocks reads a mailbox_delivery_lock style list: fcntl, flock,
// dotlock, in any order, separated by commas or spaces.
func parseLocks(param, value string) (lockStyle, error) {
	var l lockStyle
	for _, w := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		switch strings.ToLower(w) {
		case "fcntl":
			l.fcntl = true
		case "flock":
			l.flock = true
		case "dotlock":
			l.dotlock = true
		default:
			return l, fmt.Errorf("%s: invalid mailbox lock method %q", param, w)
		}
	}
	return l, nil
}

// New reads virtual(8)'s parameters from d.Config (the master.cf row's
// view) and opens its tables. A relative virtual_mailbox_base is refused,
// as virtual(8) refuses it ("do not specify relative pathname").
func New(d delivery.Deps) (*Agent, error) {
	cfg := d.Config
	if cfg == nil {
		return nil, fmt.Errorf("virtual: no configuration")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	a := &Agent{d: d, run: asuser.NewRunner(d.Self, d.SpawnSocket)}
	var err error
	if a.base, err = cfg.GetErr("virtual_mailbox_base"); err != nil {
		return nil, fmt.Errorf("virtual: virtual_mailbox_base: %w", err)
	}
	if !strings.HasPrefix(a.base, "/") {
		return nil, fmt.Errorf("virtual: do not specify relative pathname: virtual_mailbox_base = %s", a.base)
	}
	ints := []struct {
		dst  *int64
		name string
		get  func(string) (int64, error)
	}{
		{&a.minUID, "virtual_minimum_uid", cfg.Int},
		{&a.limit, "virtual_mailbox_limit", cfg.Size},
	}
	for _, p := range ints {
		if *p.dst, err = p.get(p.name); err != nil {
			return nil, fmt.Errorf("virtual: %s: %w", p.name, err)
		}
	}
	attempts, err := cfg.Int("deliver_lock_attempts")
	if err != nil {
		return nil, fmt.Errorf("virtual: deliver_lock_attempts: %w", err)
	}
	a.lockAttempts = int(attempts)
	if a.lockDelay, err = cfg.Duration("deliver_lock_delay"); err != nil {
		return nil, fmt.Errorf("virtual: deliver_lock_delay: %w", err)
	}
	if a.staleLock, err = cfg.Duration("stale_lock_time"); err != nil {
		return nil, fmt.Errorf("virtual: stale_lock_time: %w", err)
	}
	if a.origRcpt, err = cfg.Bool("enable_original_recipient"); err != nil {
		return nil, fmt.Errorf("virtual: enable_original_recipient: %w", err)
	}
	lockValue, err := cfg.GetErr("virtual_mailbox_lock")
	if err != nil {
		return nil, fmt.Errorf("virtual: virtual_mailbox_lock: %w", err)
	}
	if a.lock, err = parseLocks("virtual_mailbox_lock", lockValue); err != nil {
		return nil, fmt.Errorf("virtual: %w", err)
	}
	if a.finder, err = rewrite.NewFinder(cfg, nil); err != nil {
		return nil, fmt.Errorf("virtual: %w", err)
	}
	if err := a.openTables(cfg); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *Agent) openTables(cfg *config.Config) error {
	warn := func(msg string) { a.warn("%s", msg) }
	opts, err := maps.DaemonOptions(cfg, warn)
	if err != nil {
		return fmt.Errorf("virtual: table options: %w", err)
	}
	opts.ProxySocket = a.d.ProxySocket
	for _, t := range []struct {
		dst  **rewrite.Maps
		name string
	}{{&a.mailboxMaps, "virtual_mailbox_maps"}, {&a.uidMaps, "virtual_uid_maps"}, {&a.gidMaps, "virtual_gid_maps"}} {
		if *t.dst, err = rewrite.OpenMaps(cfg, t.name, opts); err != nil {
			return fmt.Errorf("virtual: %w", err)
		}
	}
	return nil
}

// Close releases the tables.
func (a *Agent) Close() error {
	a.run.Close() // the kept executor connections
	for _, m := range []*rewrite.Maps{a.mailboxMaps, a.uidMaps, a.gidMaps} {
		if m != nil {
			m.Close()
		}
	}
	return nil
}

func (a *Agent) warn(format string, args ...any) {
	if a.d.Log != nil {
		a.d.Log.Warning(format, args...)
	}
}

// Deliver delivers each recipient of req in turn, each from a fresh read
// of the content, and returns one Result per recipient.
func (a *Agent) Deliver(ctx context.Context, req *delivery.Request) []delivery.Result {
	out := make([]delivery.Result, 0, len(req.Recipients))
	for _, rcpt := range req.Recipients {
		r := a.deliverOne(ctx, req, rcpt)
		r.Index = rcpt.Index
		r.Relay = "virtual"
		if r.Done.IsZero() {
			r.Done = a.d.Now()
		}
		out = append(out, r)
	}
	return out
}

// configError is virtual(8)'s answer to every table and table-content
// problem: defer with 4.3.5, after a warning that names the problem for
// the admin (the sender only sees the generic text).
func configError() delivery.Result {
	return delivery.Result{State: queue.RcptDeferred, DSN: "4.3.5", Reason: "mail system configuration error"}
}

func fail(err error) delivery.Result {
	de, ok := err.(*delivery.Error)
	if !ok {
		de = &delivery.Error{DSN: "4.3.0", Text: err.Error()}
	}
	st := queue.RcptBounced
	if de.Temporary() {
		st = queue.RcptDeferred
	}
	return delivery.Result{State: st, DSN: de.DSN, Reason: de.Text}
}

// deliverOne is virtual(8)'s deliver_mailbox() for one recipient.
func (a *Agent) deliverOne(ctx context.Context, req *delivery.Request, rcpt delivery.Recipient) delivery.Result {
	// virtual(8) works on the lowercased address (msg_attr.user).
	user := asciiLower(rcpt.Address)
	found, ok, err := a.finder.Find(a.mailboxMaps, user)
	if err != nil {
		a.warn("table %s: lookup %s: %v", a.mailboxMaps.Title, user, err)
		return configError()
	}
	if !ok {
		return delivery.Result{State: queue.RcptBounced, DSN: "5.1.1", Reason: "unknown user: \"" + user + "\""}
	}
	path, perr := a.mailboxPath(found.Value)
	if perr != nil {
		a.warn("recipient %s: %v", user, perr)
		return configError()
	}
	uid, res, ok := a.id(user, a.uidMaps, func(n int64) bool { return n >= a.minUID }, "uid")
	if !ok {
		return res
	}
	gid, res, ok := a.id(user, a.gidMaps, func(n int64) bool { return n > 0 }, "gid")
	if !ok {
		return res
	}
	creds := asuser.Creds{UID: uint32(uid), GID: uint32(gid), Groups: []uint32{uint32(gid)}, User: user}
	orig := ""
	if a.origRcpt {
		orig = rcpt.OrigAddress
		if orig == "" {
			orig = rcpt.Address
		}
	}
	sender := req.Envelope.Sender
	if strings.HasSuffix(path, "/") {
		job := asuser.Job{Kind: asuser.KindMaildir, Path: path, Maildir: maildir.Options{
			ReturnPath:    true,
			Sender:        sender,
			OrigRecipient: orig,
			Recipient:     rcpt.Address,
			SizeLimit:     a.limit,
			Key:           req.QueueID + "." + strconv.Itoa(rcpt.Index),
			Arrival:       req.Envelope.Arrival,
		}}
		if err := a.run.Deliver(ctx, creds, job, req.Content()); err != nil {
			return fail(err)
		}
		return delivery.Result{State: queue.RcptDelivered, DSN: "2.0.0", Reason: "delivered to maildir", Replayable: true}
	}
	job := asuser.Job{Kind: asuser.KindMbox, Path: path, Mbox: mbox.Options{
		Sender:        sender,
		ReturnPath:    true,
		Recipient:     rcpt.Address,
		OrigRecipient: orig,
		SizeLimit:     a.limit,
		Fcntl:         a.lock.fcntl,
		Flock:         a.lock.flock,
		DotLock:       a.lock.dotlock,
		Create:        true,
		LockAttempts:  a.lockAttempts,
		LockDelay:     a.lockDelay,
		StaleLockTime: a.staleLock,
		DefaultDSN:    "4.2.0",
	}}
	if err := a.run.Deliver(ctx, creds, job, req.Content()); err != nil {
		r := fail(err)
		if !strings.HasPrefix(r.Reason, "delivery child failed") {
			r.Reason = "delivery failed to mailbox " + path + ": " + r.Reason
		}
		return r
	}
	return delivery.Result{State: queue.RcptDelivered, DSN: "2.0.0", Reason: "delivered to mailbox"}
}

// mailboxPath is virtual_mailbox_base "/" the table's value, refused when
// the value could lead outside the base: a ".." component, or a NUL.
// Postfix concatenates without looking; moat will not let one table
// entry write anywhere on the system as that entry's uid.
func (a *Agent) mailboxPath(value string) (string, error) {
	if value == "" || strings.IndexByte(value, 0) >= 0 {
		return "", fmt.Errorf("bad mailbox path %q in virtual_mailbox_maps", value)
	}
	for _, part := range strings.Split(value, "/") {
		if part == ".." {
			return "", fmt.Errorf("mailbox path %q in virtual_mailbox_maps leaves virtual_mailbox_base", value)
		}
	}
	p := filepath.Join(a.base, value)
	if strings.HasSuffix(value, "/") {
		p += "/"
	}
	if p == a.base || p == a.base+"/" || p == "/" {
		return "", fmt.Errorf("mailbox path %q in virtual_mailbox_maps is virtual_mailbox_base itself", value)
	}
	return p, nil
}

// id looks up the owner's uid or gid as virtual(8) does: missing or out of
// range both defer with a warning naming the table.
func (a *Agent) id(user string, m *rewrite.Maps, ok func(int64) bool, what string) (int64, delivery.Result, bool) {
	found, hit, err := a.finder.Find(m, user)
	if err != nil {
		a.warn("table %s: lookup %s: %v", m.Title, user, err)
		return 0, configError(), false
	}
	if !hit {
		a.warn("recipient %s: not found in %s", user, m.Title)
		return 0, configError(), false
	}
	n := atol(found.Value)
	if !ok(n) || n > 1<<32-2 {
		a.warn("recipient %s: bad %s %s in %s", user, what, found.Value, m.Title)
		return 0, configError(), false
	}
	return n, delivery.Result{}, true
}

// atol is C's atol(3), which virtual(8) uses on the table's value: leading
// blanks and sign, then digits up to the first non-digit; 0 when none.
func atol(s string) int64 {
	s = strings.TrimLeft(s, " \t")
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var n int64
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int64(s[i]-'0')
		if n > 1<<40 {
			break // far past any uid: the range check refuses it
		}
	}
	if neg {
		return -n
	}
	return n
}

// asciiLower is Postfix's lowercase(3): ASCII letters only, so 8-bit
// addresses keep their bytes.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
