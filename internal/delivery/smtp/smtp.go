// Package smtp is moat's smtp(8) delivery agent: it delivers a request to
// the mail exchangers of its next hop (RFC 5321 section 5), trying MX
// hosts in preference order and the next one when a server cannot be
// reached or defers, as Postfix's smtp(8) does, with the same parameters
// (smtp_mx_address_limit, smtp_mx_session_limit, smtp_*_timeout,
// smtp_helo_name, smtp_bind_address, smtp_connection_cache_*,
// smtp_fallback_relay) and log texts.
//
// The protocol (EHLO, STARTTLS, PIPELINING, SIZE, 8BITMIME and the
// downgrade to quoted-printable, SMTPUTF8, DSN parameters, per-recipient
// replies) is the client session shared with lmtp(8),
// internal/delivery/smtpclient; the TLS level of each destination
// (smtp_tls_security_level, smtp_tls_policy_maps) is chosen in tls.go.
package smtp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/smtpclient"
	"moat/internal/dns"
	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/mtasts"
	"moat/internal/resolve"
)

// Agent delivers requests over SMTP. It is safe for concurrent use as
// delivery.Agent requires: its settings are read-only, the resolver and
// the connection cache are safe for concurrent use, and each request gets
// its own DNS session.
type Agent struct {
	st       smtpclient.Settings
	log      *maillog.Logger
	now      func() time.Time
	cache    *smtpclient.Cache
	resolver *dns.Resolver
	// own says whether an address is this host's (inet_interfaces,
	// proxy_interfaces), for the MX self-check.
	own     func(netip.Addr) bool
	classes *resolve.Resolver

	port      int
	fallback  []Destination
	addrLimit int
	sessLimit int
	connect   time.Duration
	bind4     netip.Addr
	bind6     netip.Addr
	// tls is smtp_tls_* and smtp_tls_policy_maps; see tls.go.
	tls *tlsPolicy

	// auth holds smtp_sasl_password_maps (nil without
	// smtp_sasl_auth_enable); see auth.go.
	auth *clientAuth
	// sts is the MTA-STS policy source (nil unless smtp_mta_sts); see
	// mtasts.go.
	sts *mtasts.Source
}

// New reads the smtp_* parameters from d.Config (the master.cf row's -o
// overrides included) and returns the agent. A bad value is an error, so
// a misconfigured service fails at start, not at the first delivery.
func New(d delivery.Deps) (*Agent, error) {
	st, err := smtpclient.AgentSettings(d, "smtp")
	if err != nil {
		return nil, err
	}
	cfg := d.Config
	if err := unsupported(cfg); err != nil {
		return nil, err
	}
	a := &Agent{st: st, log: d.Log, now: st.Now}
	if a.port, err = smtpclient.ParsePort(cfg.Get("smtp_tcp_port")); err != nil {
		return nil, fmt.Errorf("smtp: smtp_tcp_port: %w", err)
	}
	if fb := strings.TrimSpace(cfg.Get("smtp_fallback_relay")); fb != "" {
		if a.fallback, err = ParseDestinations(fb, a.port); err != nil {
			return nil, fmt.Errorf("smtp: smtp_fallback_relay: %w", err)
		}
	}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"smtp_mx_address_limit", &a.addrLimit}, {"smtp_mx_session_limit", &a.sessLimit}} {
		n, err := cfg.Int(p.name)
		if err != nil {
			return nil, fmt.Errorf("smtp: %s: %w", p.name, err)
		}
		*p.dst = int(n)
	}
	if a.connect, err = cfg.Duration("smtp_connect_timeout"); err != nil {
		return nil, fmt.Errorf("smtp: smtp_connect_timeout: %w", err)
	}
	if a.bind4, a.bind6, err = bindAddrs(cfg); err != nil {
		return nil, err
	}
	a.cache, err = smtpclient.ReadCache(cfg, "smtp", st.Quit, func(dest string) (string, bool) {
		return cacheKey(dest), true
	})
	if err != nil {
		return nil, err
	}
	warn := func(s string) {
		if d.Log != nil {
			d.Log.Warning("%s", s)
		}
	}
	// The resolver reads dns_servers and inet_protocols as smtpd's does;
	// the reply filter is smtp_dns_reply_filter.
	view := cfg.WithOverrides(map[string]string{"smtpd_dns_reply_filter": cfg.Get("smtp_dns_reply_filter")})
	mo := maps.Options{Fold: true, ProxySocket: d.ProxySocket, Warn: warn}
	if a.resolver, err = newResolver(view, mo, warn); err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	if a.classes, err = resolve.New(cfg, mo); err != nil {
		a.resolver.Close()
		return nil, fmt.Errorf("smtp: %w", err)
	}
	a.own = a.classes.IsOwnAddr
	if a.tls, err = newTLSPolicy(cfg, mo, warn); err != nil {
		a.resolver.Close()
		a.classes.Close()
		return nil, err
	}
	if a.auth, a.st.Auth, err = readAuth(cfg, mo); err != nil {
		a.resolver.Close()
		a.classes.Close()
		return nil, err
	}
	// Policies are fetched through the agent's own resolver, so
	// dns_servers applies to them as to the MX lookups.
	if a.sts, err = mtasts.FromConfig(cfg, a.resolver, warn); err != nil {
		a.Close()
		return nil, fmt.Errorf("smtp: %w", err)
	}
	return a, nil
}

// unsupported refuses settings that ask for what this agent cannot do
// yet (smtp_tls_wrappermode; the fingerprint level is refused by
// tlsconf.NewClient), so that mail whose policy demands them waits in
// the queue ("mail transport unavailable") instead of going out with
// less protection.
func unsupported(cfg *config.Config) error {
	for _, p := range []string{"smtp_tls_wrappermode"} {
		on, err := cfg.Bool(p)
		if err != nil {
			return fmt.Errorf("smtp: %s: %w", p, err)
		}
		if on {
			return fmt.Errorf("smtp: %s = yes is not implemented yet in this version of moat", p)
		}
	}
	return nil
}

// bindAddrs reads smtp_bind_address and smtp_bind_address6: the local
// address of outgoing connections of each family, none when empty.
func bindAddrs(cfg *config.Config) (v4, v6 netip.Addr, err error) {
	for _, p := range []struct {
		name string
		dst  *netip.Addr
		is4  bool
	}{{"smtp_bind_address", &v4, true}, {"smtp_bind_address6", &v6, false}} {
		s := strings.TrimSpace(cfg.Get(p.name))
		if s == "" {
			continue
		}
		a, perr := netip.ParseAddr(strings.Trim(s, "[]"))
		if perr != nil || a.Unmap().Is4() != p.is4 {
			return v4, v6, fmt.Errorf("smtp: %s: bad address %q", p.name, s)
		}
		*p.dst = a.Unmap()
	}
	return v4, v6, nil
}

// cacheKey names a next hop in the connection cache.
func cacheKey(nexthop string) string { return strings.ToLower(strings.TrimSpace(nexthop)) }

// Close ends the cached idle connections with QUIT and releases the
// resolver.
func (a *Agent) Close() error {
	a.cache.Close()
	return errors.Join(a.resolver.Close(), a.classes.Close(), a.auth.close(), a.tls.close())
}

// Deliver sends req to the servers of req.Nexthop and returns one result
// per recipient. A deferral caused by the destination rather than the
// recipient carries SiteFailure (no server reachable here, a failed
// session in smtpclient), for the queue manager's concurrency
// feedback and dead-destination throttling (qmgr(8) STRATEGIES); the
// agent itself keeps no list of dead destinations.
func (a *Agent) Deliver(ctx context.Context, req *delivery.Request) []delivery.Result {
	d, site := a.deliver(ctx, req)
	out := d.Results()
	for i := range out {
		out[i].SiteFailure = site || out[i].SiteFailure
	}
	return out
}

// DeliverOutcomes is Deliver with the details a delivery status
// notification needs (Remote-MTA, the server's reply).
func (a *Agent) DeliverOutcomes(ctx context.Context, req *delivery.Request) []smtpclient.Outcome {
	d, site := a.deliver(ctx, req)
	out := d.Outcomes()
	for i := range out {
		out[i].SiteFailure = site || out[i].SiteFailure
	}
	return out
}

// deliver runs req; site says that no server of the next hop could be
// reached, or its servers could not be found for now (a site failure
// without a session).
func (a *Agent) deliver(ctx context.Context, req *delivery.Request) (_ *smtpclient.Delivery, site bool) {
	d := smtpclient.NewDelivery(ctx, &a.st, req)
	dests, err := ParseDestinations(req.Nexthop, a.port)
	if err != nil {
		if a.log != nil {
			a.log.Warning("%s: %v", req.QueueID, err)
		}
		d.Fail("4.3.5", "Server configuration error", "none")
		return d, false
	}
	key := cacheKey(req.Nexthop)
	sessions := 0
	if w := a.cache.Get(key, a.now()); w != nil && d.Probe(w) {
		// A cached connection is a first try: what it defers is
		// tried again on the servers the lookup gives. It counts
		// toward smtp_mx_session_limit, as Postfix's cached sessions
		// do.
		sessions++
		d.BestMX = true
		a.finish(d, key, w, false)
		if d.Done() {
			return d, false
		}
	}
	servers, lerr := a.resolve(ctx, dests)
	if len(servers) == 0 {
		site = !lerr.hard() && sessions == 0 && ctx.Err() == nil
		d.Fail(lerr.dsn, lerr.reason, "none")
		return d, site
	}
	last := lookupError{"4.4.1", "no server answered"}
	policyFail := false
	// MTA-STS policies of this request's destinations, looked up once
	// for all their servers (mtasts.go).
	sts := stsPolicies{}
	for i, srv := range servers {
		if ctx.Err() != nil {
			break
		}
		final := i == len(servers)-1 || a.sessLimit > 0 && sessions+1 >= a.sessLimit
		tp, dsn, reason := a.tlsFor(ctx, srv, sts)
		if dsn != "" {
			// Not a dead destination: its TLS policy is at fault.
			last, policyFail = lookupError{dsn, reason}, true
			continue
		}
		w, why := a.dial(ctx, srv)
		if w == nil {
			last = lookupError{"4.4.1", why}
			if a.log != nil && !final {
				a.log.Info("%s", why)
			}
			continue
		}
		sessions++
		d.BestMX = srv.best
		w.TLS = tp
		a.finish(d, key, w, final)
		if w.RetryPlain {
			// "may": the TLS handshake failed, so the same server is
			// tried again in clear (Postfix's smtp_connect.c).
			if w, why = a.dial(ctx, srv); w == nil {
				last = lookupError{"4.4.1", why}
				continue
			}
			a.finish(d, key, w, final)
		}
		if d.Done() || final {
			break
		}
	}
	// A TLS policy problem is not a dead destination: the policy is at
	// fault, not the servers.
	site = sessions == 0 && ctx.Err() == nil && !policyFail
	if !d.Done() {
		if ctx.Err() != nil {
			last = lookupError{"4.4.2", "delivery interrupted: mail system shutting down"}
		}
		d.Fail(last.dsn, last.reason, "none")
	}
	return d, site
}

// finish runs one session and caches or ends its connection.
func (a *Agent) finish(d *smtpclient.Delivery, key string, w *smtpclient.Conn, final bool) {
	// A session logged in with the sender's own login is not for
	// another sender's mail, so it is not cached.
	if d.Session(w, final) && (a.auth != nil && a.auth.senderDep || !a.cache.Put(key, w, a.now())) {
		d.Quit(w)
	}
}

// resolve lists the servers of the destinations and then of
// smtp_fallback_relay, at most smtp_mx_address_limit addresses for each.
// A permanent lookup failure of the next hop itself is final (the
// fallback relays are for destinations that cannot be reached, not for
// ones that do not exist); otherwise the error returned with an empty
// list is the last one.
func (a *Agent) resolve(ctx context.Context, dests []Destination) ([]server, *lookupError) {
	sess := a.resolver.Session()
	limit := a.addrLimit
	if limit <= 0 {
		limit = 1 << 30
	}
	var out []server
	var last *lookupError
	hard := true
	for _, dest := range dests {
		list, err := a.servers(ctx, sess, dest, limit)
		if err != nil {
			hard = hard && err.hard()
			last = err
			continue
		}
		for i := range list {
			list[i].dest = dest
		}
		out = append(out, list...)
	}
	if len(out) == 0 && last != nil && hard {
		return nil, last
	}
	for _, dest := range a.fallback {
		list, err := a.servers(ctx, sess, dest, limit)
		if err != nil {
			if last == nil {
				last = err
			}
			continue
		}
		for i := range list {
			list[i].dest = dest
		}
		out = append(out, list...)
	}
	if len(out) == 0 && last == nil {
		last = &lookupError{"4.4.3", "no usable address"}
	}
	return out, last
}

// dial connects to one server from smtp_bind_address when set, and
// returns the connection or Postfix's "connect to host[addr]:port:
// reason".
func (a *Agent) dial(ctx context.Context, srv server) (*smtpclient.Conn, string) {
	port := strconv.Itoa(srv.port)
	namaddr := srv.host + "[" + srv.addr.String() + "]"
	dl := net.Dialer{Timeout: a.connect}
	if srv.addr.Is4() && a.bind4.IsValid() {
		dl.LocalAddr = &net.TCPAddr{IP: a.bind4.AsSlice()}
	} else if srv.addr.Is6() && a.bind6.IsValid() {
		dl.LocalAddr = &net.TCPAddr{IP: a.bind6.AsSlice()}
	}
	c, err := dl.DialContext(ctx, "tcp", net.JoinHostPort(srv.addr.String(), port))
	if err != nil {
		return nil, "connect to " + namaddr + ":" + port + ": " + smtpclient.ConnErr(err)
	}
	return smtpclient.NewConn(c, srv.host, namaddr, namaddr+":"+port, a.now()), ""
}

var _ delivery.Agent = (*Agent)(nil)
