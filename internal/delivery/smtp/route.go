package smtp

import (
	"context"
	"net/netip"

	"moat/internal/dns"
)

// server is one address to try, in order.
type server struct {
	host string // the MX host or destination name, for host[addr]
	addr netip.Addr
	port int
	// pref is the MX preference (0 without MX).
	pref uint16
	// best says the address is one of the most preferred MX hosts (or
	// the destination has no MX): a mail loop there is permanent.
	best bool
	// dest is the destination the address came from, whose TLS policy
	// applies (a fallback relay has its own).
	dest Destination
	// DNSSEC state for DANE (dane.go): viaMX says the host came from an
	// MX lookup (or the lookup said there is no MX), mxSecure that the
	// answer was authentic, addrSecure that the host's addresses were;
	// sess is the request's DNS session, for the TLSA lookup.
	viaMX, mxSecure, addrSecure bool
	sess                        *dns.Session
}

// lookupError is why a destination has no address, in Postfix's words
// and with its DSN.
type lookupError struct {
	dsn, reason string
}

// hard reports a permanent failure (the name does not exist, null MX).
func (e *lookupError) hard() bool { return e.dsn[0] == '5' }

// servers resolves one destination to at most limit addresses as
// smtp_addr.c does: MX records in preference order (equal preferences
// shuffled by the resolver), each host's A/AAAA records per
// inet_protocols; the domain's own addresses when it has no MX; a null
// MX (RFC 7505) or a name that does not exist fails permanently.
func (a *Agent) servers(ctx context.Context, sess *dns.Session, d Destination, limit int) ([]server, *lookupError) {
	if d.Addr.IsValid() {
		return []server{{host: d.Host, addr: d.Addr, port: d.Port, best: true}}, nil
	}
	if d.NoMX {
		return a.hostServers(ctx, sess, d.Host, d.Port, true, limit)
	}
	mx := sess.MX(ctx, d.Host)
	switch mx.Status {
	case dns.OK:
	case dns.NotFound:
		// RFC 5321 section 5.1: no MX, the domain is its own host.
		// Whether "no MX" was itself authenticated decides DANE.
		list, err := a.hostServers(ctx, sess, d.Host, d.Port, true, limit)
		for i := range list {
			list[i].viaMX, list[i].mxSecure = true, mx.Authentic
		}
		return list, err
	case dns.NullMX:
		return nil, &lookupError{"5.1.0", "Domain " + d.Host + " does not accept mail (nullMX)"}
	case dns.Fail:
		return nil, &lookupError{"5.4.4", why(mx)}
	default:
		return nil, &lookupError{"4.4.3", why(mx)}
	}
	var out []server
	var fail *lookupError
	bestPref := mx.RRs[0].Pref
	for _, rr := range mx.RRs {
		list, err := a.hostServers(ctx, sess, rr.Value, d.Port, rr.Pref == bestPref, 1<<30)
		if err != nil {
			// Postfix goes on with the other MX hosts; a temporary
			// failure of one makes the whole result temporary.
			if a.log != nil {
				a.log.Info("unable to look up host %s: %s", rr.Value, err.reason)
			}
			if fail == nil || !err.hard() {
				fail = err
			}
			continue
		}
		for i := range list {
			list[i].pref = rr.Pref
			list[i].viaMX, list[i].mxSecure = true, mx.Authentic
		}
		out = append(out, list...)
	}
	if len(out) == 0 {
		if fail == nil {
			fail = &lookupError{"4.4.3", "no usable address for " + d.Host}
		}
		return nil, fail
	}
	out, lerr := a.truncateSelf(out, d.Host, bestPref)
	if lerr != nil {
		return nil, lerr
	}
	return out[:min(len(out), limit)], nil
}

// truncateSelf drops this host and every MX host no better than it, as
// smtp_addr.c's smtp_find_self and smtp_truncate_self do: a backup MX
// hands mail only to better ones, and mail for which this host is the
// best MX has nowhere to go.
func (a *Agent) truncateSelf(list []server, domain string, bestPref uint16) ([]server, *lookupError) {
	self := -1
	for _, srv := range list {
		if a.own != nil && a.own(srv.addr) {
			self = int(srv.pref)
			break
		}
	}
	if self < 0 {
		return list, nil
	}
	var kept []server
	for _, srv := range list {
		if int(srv.pref) < self {
			kept = append(kept, srv)
		}
	}
	if len(kept) > 0 {
		return kept, nil
	}
	if list[0].pref != bestPref {
		// The better MX hosts could not be looked up.
		return nil, &lookupError{"4.4.4", "unable to find primary relay for " + domain}
	}
	return nil, &lookupError{"5.4.6", "mail for " + domain + " loops back to myself"}
}

// hostServers is one host's addresses.
func (a *Agent) hostServers(ctx context.Context, sess *dns.Session, host string, port int, best bool, limit int) ([]server, *lookupError) {
	res := sess.HostAddrs(ctx, host)
	switch res.Status {
	case dns.OK:
	case dns.Fail, dns.NotFound:
		return nil, &lookupError{"5.4.4", why(res)}
	default:
		return nil, &lookupError{"4.4.3", why(res)}
	}
	var out []server
	for _, rr := range res.RRs {
		ip, err := netip.ParseAddr(rr.Value)
		if err != nil || len(out) >= limit {
			continue
		}
		out = append(out, server{host: host, addr: ip.Unmap(), port: port, best: best, addrSecure: res.Authentic, sess: sess})
	}
	return out, nil
}

// why is the resolver's explanation in Postfix's words.
func why(r dns.Result) string {
	if r.Why != "" {
		return r.Why
	}
	return "Host or domain name not found: " + r.Reason
}
