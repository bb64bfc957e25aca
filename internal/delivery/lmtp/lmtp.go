// Package lmtp is moat's lmtp(8) delivery agent: it hands a message to an
// LMTP server (RFC 2033) such as Dovecot's, over a UNIX-domain socket or
// TCP, and maps the server's per-recipient replies to per-recipient
// results with the texts Postfix's lmtp(8) (smtp(8) in LMTP mode) logs, so
// the mailbox_transport = lmtp:unix:private/dovecot-lmtp and
// virtual_transport = lmtp:... set-ups of Postfix work unchanged.
//
// The protocol itself (LHLO, pipelined MAIL/RCPT/DATA, one reply per
// recipient after the body, the RSET probe and connection cache) is the
// client session this agent shares with smtp(8), in
// internal/delivery/smtpclient; this package chooses and connects to the
// server.
package lmtp

import (
	"context"
	"fmt"
	"strings"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/smtpclient"
	"moat/internal/maillog"
	"moat/internal/queue"
)

// Agent delivers requests to LMTP servers. It holds its settings and a
// mutex-guarded cache of idle connections, so it is safe for concurrent
// use as delivery.Agent requires.
type Agent struct {
	s     settings
	st    smtpclient.Settings
	log   *maillog.Logger
	now   func() time.Time
	cache *smtpclient.Cache
}

// settings are the lmtp_* parameters of postconf(5) that choose and
// reach the server; the protocol's are in smtpclient.Settings.
type settings struct {
	myhostname string
	queueDir   string
	tcpPort    int
	// connect is lmtp_connect_timeout; zero means none
	// (lmtp_connect_timeout = 0 is Postfix's default: the kernel's).
	connect time.Duration
}

// New reads the lmtp_* parameters from d.Config (the master.cf row's -o
// overrides included) and returns the agent. A bad value is an error, so
// a misconfigured service fails at start, not at the first delivery.
func New(d delivery.Deps) (*Agent, error) {
	st, err := smtpclient.AgentSettings(d, "lmtp")
	if err != nil {
		return nil, err
	}
	cfg := d.Config
	if err := unsupported(cfg); err != nil {
		return nil, err
	}
	s := settings{myhostname: cfg.Get("myhostname"), queueDir: cfg.Get("queue_directory")}
	if s.tcpPort, err = smtpclient.ParsePort(cfg.Get("lmtp_tcp_port")); err != nil {
		return nil, fmt.Errorf("lmtp: lmtp_tcp_port: %w", err)
	}
	if s.connect, err = cfg.Duration("lmtp_connect_timeout"); err != nil {
		return nil, fmt.Errorf("lmtp: lmtp_connect_timeout: %w", err)
	}
	cache, err := smtpclient.ReadCache(cfg, "lmtp", st.Quit, func(dest string) (string, bool) {
		nh, err := ParseNexthop(dest, s.tcpPort, s.queueDir)
		return nh.String(), err == nil
	})
	if err != nil {
		return nil, err
	}
	return &Agent{s: s, st: st, log: d.Log, now: st.Now, cache: cache}, nil
}

// Close ends the cached idle connections with QUIT.
func (a *Agent) Close() error {
	a.cache.Close()
	return nil
}

// Result is delivery.Result; the alias keeps signatures short.
type Result = delivery.Result

// Deliver sends req to the LMTP server named by req.Nexthop and returns
// one result per recipient. Nothing is left undecided: a failure before
// a recipient's final reply defers that recipient, as lmtp(8) does.
func (a *Agent) Deliver(ctx context.Context, req *delivery.Request) []Result {
	d := smtpclient.NewDelivery(ctx, &a.st, req)
	nh, err := ParseNexthop(req.Nexthop, a.s.tcpPort, a.s.queueDir)
	if err != nil {
		if a.log != nil {
			a.log.Warning("%s: %v", req.QueueID, err)
		}
		// Postfix's smtp_connect_unix says this for an unusable socket
		// name; it is the admin's to fix, so the mail waits.
		d.Fail("4.3.5", "Server configuration error", "none")
		return d.Results()
	}
	key := nh.String()
	w := a.cache.Get(key, a.now())
	if w != nil && !d.Probe(w) {
		w = nil
	}
	if w == nil {
		var dsn, reason string
		if w, dsn, reason = a.connect(ctx, nh); w == nil {
			d.Fail(dsn, reason, "none")
			out := d.Results()
			for i := range out {
				// No server to talk to: the destination failed
				// (Postfix's smtp_site_fail), not the recipient.
				out[i].SiteFailure = ctx.Err() == nil && out[i].State == queue.RcptDeferred
			}
			return out
		}
	}
	// One server: an LMTP destination has no backup, so every soft
	// failure is final.
	if d.Session(w, true) && !a.cache.Put(key, w, a.now()) {
		d.Quit(w)
	}
	// A failed session (greeting or LHLO refused, connection lost) marks
	// its deferrals SiteFailure in smtpclient.
	return d.Results()
}

var _ delivery.Agent = (*Agent)(nil)

// unsupported refuses the lmtp_* settings that ask for TLS or SASL, which
// moat's lmtp(8) does not speak yet: a service told to encrypt or log in
// must not quietly deliver in clear or without credentials, so it fails at
// start and its mail waits in the queue ("mail transport unavailable").
func unsupported(cfg *config.Config) error {
	for _, p := range []string{"lmtp_sasl_auth_enable", "lmtp_use_tls", "lmtp_enforce_tls", "lmtp_tls_wrappermode"} {
		on, err := cfg.Bool(p)
		if err != nil {
			return fmt.Errorf("lmtp: %s: %w", p, err)
		}
		if on {
			return fmt.Errorf("lmtp: %s = yes is not implemented yet in this version of moat", p)
		}
	}
	switch lvl := strings.TrimSpace(cfg.Get("lmtp_tls_security_level")); lvl {
	case "", "none":
	default:
		return fmt.Errorf("lmtp: lmtp_tls_security_level = %s is not implemented yet in this version of moat (LMTP has no TLS here)", lvl)
	}
	return nil
}
