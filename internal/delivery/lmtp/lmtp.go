// Package lmtp is moat's lmtp(8) delivery agent: it hands a message to an
// LMTP server (RFC 2033) such as Dovecot's, over a UNIX-domain socket or
// TCP, and maps the server's per-recipient replies to per-recipient
// results with the texts Postfix's lmtp(8) (smtp(8) in LMTP mode) logs, so
// the mailbox_transport = lmtp:unix:private/dovecot-lmtp and
// virtual_transport = lmtp:... set-ups of Postfix work unchanged.
//
// A delivery request is one mail transaction: MAIL FROM, one RCPT TO per
// recipient and one DATA, pipelined when the server offers PIPELINING
// (RFC 2920), then one reply per accepted recipient after the body (RFC
// 2033 section 4.2). Connections are kept idle for the next request to
// the same next hop, as Postfix's connection cache does, and probed with
// RSET before reuse.
package lmtp

import (
	"context"
	"fmt"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/maillog"
	"moat/internal/queue"
)

// Agent delivers requests to LMTP servers. It holds its settings and a
// mutex-guarded cache of idle connections, so it is safe for concurrent
// use as delivery.Agent requires.
type Agent struct {
	s     settings
	log   *maillog.Logger
	now   func() time.Time
	cache *connCache
}

// settings are the lmtp_* parameters of postconf(5) that the agent uses,
// read once from the service's view of main.cf.
type settings struct {
	lhloName   string
	myhostname string
	queueDir   string
	tcpPort    int
	// lineLimit is lmtp_line_length_limit: longer lines are broken.
	lineLimit int
	// Timeouts, postconf(5) lmtp_*_timeout; zero means none
	// (lmtp_connect_timeout = 0 is Postfix's default: the kernel's).
	connect, lhlo, mail, rcpt, dataInit, dataXfer, dataDone, quit, rset time.Duration
}

// New reads the lmtp_* parameters from d.Config (the master.cf row's -o
// overrides included) and returns the agent. A bad value is an error, so
// a misconfigured service fails at start, not at the first delivery.
func New(d delivery.Deps) (*Agent, error) {
	if d.Config == nil {
		return nil, fmt.Errorf("lmtp: no configuration")
	}
	cfg := d.Config
	s := settings{
		lhloName:   cfg.Get("lmtp_lhlo_name"),
		myhostname: cfg.Get("myhostname"),
		queueDir:   cfg.Get("queue_directory"),
	}
	if s.lhloName == "" {
		s.lhloName = s.myhostname
	}
	if s.lhloName == "" {
		return nil, fmt.Errorf("lmtp: lmtp_lhlo_name and myhostname are empty")
	}
	port, err := parsePort(cfg.Get("lmtp_tcp_port"))
	if err != nil {
		return nil, fmt.Errorf("lmtp: lmtp_tcp_port: %w", err)
	}
	s.tcpPort = port
	limit, err := cfg.Int("lmtp_line_length_limit")
	if err != nil {
		return nil, fmt.Errorf("lmtp: lmtp_line_length_limit: %w", err)
	}
	s.lineLimit = int(max(limit, 0))
	for _, p := range []struct {
		name string
		dst  *time.Duration
	}{
		{"lmtp_connect_timeout", &s.connect},
		{"lmtp_lhlo_timeout", &s.lhlo},
		{"lmtp_mail_timeout", &s.mail},
		{"lmtp_rcpt_timeout", &s.rcpt},
		{"lmtp_data_init_timeout", &s.dataInit},
		{"lmtp_data_xfer_timeout", &s.dataXfer},
		{"lmtp_data_done_timeout", &s.dataDone},
		{"lmtp_quit_timeout", &s.quit},
		{"lmtp_rset_timeout", &s.rset},
	} {
		v, err := cfg.Duration(p.name)
		if err != nil {
			return nil, fmt.Errorf("lmtp: %s: %w", p.name, err)
		}
		*p.dst = v
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	cache, err := newCache(cfg, s)
	if err != nil {
		return nil, err
	}
	return &Agent{s: s, log: d.Log, now: now, cache: cache}, nil
}

// newCache reads the connection cache parameters. With
// lmtp_connection_cache_on_demand every next hop is cached (Postfix
// caches on demand, when the queue manager sees a backlog; moat's
// agent serves concurrent requests and reuses connections whenever it
// has one idle); otherwise only lmtp_connection_cache_destinations.
func newCache(cfg *config.Config, s settings) (*connCache, error) {
	onDemand, err := cfg.Bool("lmtp_connection_cache_on_demand")
	if err != nil {
		return nil, fmt.Errorf("lmtp: lmtp_connection_cache_on_demand: %w", err)
	}
	dests, err := cfg.List("lmtp_connection_cache_destinations")
	if err != nil {
		return nil, fmt.Errorf("lmtp: lmtp_connection_cache_destinations: %w", err)
	}
	listed := make(map[string]bool, len(dests))
	for _, d := range dests {
		if nh, err := ParseNexthop(d, s.tcpPort, s.queueDir); err == nil {
			listed[nh.String()] = true
		}
	}
	if !onDemand && len(listed) == 0 {
		return nil, nil
	}
	c := &connCache{quit: s.quit, enabled: func(key string) bool { return onDemand || listed[key] }}
	if c.idle, err = cfg.Duration("lmtp_connection_cache_time_limit"); err != nil {
		return nil, fmt.Errorf("lmtp: lmtp_connection_cache_time_limit: %w", err)
	}
	if c.life, err = cfg.Duration("lmtp_connection_reuse_time_limit"); err != nil {
		return nil, fmt.Errorf("lmtp: lmtp_connection_reuse_time_limit: %w", err)
	}
	n, err := cfg.Int("lmtp_connection_reuse_count_limit")
	if err != nil {
		return nil, fmt.Errorf("lmtp: lmtp_connection_reuse_count_limit: %w", err)
	}
	c.uses = int(max(n, 0))
	if c.idle <= 0 {
		return nil, nil
	}
	return c, nil
}

// Factory is New with the signature of qmgr.AgentFactory, for the
// process that registers agents by master.cf command ("lmtp"); it keeps
// a failed New from becoming a non-nil interface around a nil *Agent.
func Factory(d delivery.Deps) (delivery.Agent, error) {
	a, err := New(d)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Close ends the cached idle connections with QUIT.
func (a *Agent) Close() error {
	a.cache.close()
	return nil
}

// Deliver sends req to the LMTP server named by req.Nexthop and returns
// one result per recipient. Nothing is left undecided: a failure before
// a recipient's final reply defers that recipient, as lmtp(8) does.
func (a *Agent) Deliver(ctx context.Context, req *delivery.Request) []Result {
	return a.deliver(ctx, req)
}

// Result is delivery.Result; the alias keeps signatures short.
type Result = delivery.Result

func (a *Agent) deliver(ctx context.Context, req *delivery.Request) []Result {
	nh, err := ParseNexthop(req.Nexthop, a.s.tcpPort, a.s.queueDir)
	if err != nil {
		if a.log != nil {
			a.log.Warning("%s: %v", req.QueueID, err)
		}
		// Postfix's smtp_connect_unix says this for an unusable socket
		// name; it is the admin's to fix, so the mail waits.
		return a.all(req, queue.RcptDeferred, "4.3.5", "Server configuration error", "none")
	}
	return newSession(ctx, a, req, nh).run()
}

// all gives every recipient of req the same outcome.
func (a *Agent) all(req *delivery.Request, st queue.RcptState, dsn, reason, relay string) []Result {
	out := make([]Result, 0, len(req.Recipients))
	done := a.now()
	for _, r := range req.Recipients {
		out = append(out, Result{Index: r.Index, State: st, DSN: dsn, Reason: reason, Relay: relay, Done: done})
	}
	return out
}

// stateOf maps a DSN class to the recipient state: 4.x.x waits for a
// retry, 5.x.x bounces (RFC 3463 section 3.1).
func stateOf(dsn string) queue.RcptState {
	switch {
	case len(dsn) > 0 && dsn[0] == '2':
		return queue.RcptDelivered
	case len(dsn) > 0 && dsn[0] == '5':
		return queue.RcptBounced
	default:
		return queue.RcptDeferred
	}
}

var _ delivery.Agent = (*Agent)(nil)
