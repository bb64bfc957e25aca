package restrict

import (
	"net/netip"
	"strings"

	"moat/internal/dns"
)

// hostStatus combines the lookups of several record types the way
// dns_lookup_l() with DNS_REQ_FLAG_STOP_OK reports them: any success wins,
// then a temporary failure, then a reply filter that dropped everything,
// then a malformed reply; otherwise (a null MX included) the name was not
// found.
func hostStatus(results ...dns.Result) dns.Result {
	rank := func(s dns.Status) int {
		switch s {
		case dns.OK:
			return 5
		case dns.Retry:
			return 4
		case dns.Policy:
			return 3
		case dns.Invalid:
			return 2
		}
		return 1
	}
	best := dns.Result{Status: dns.NotFound, Reason: "Host not found"}
	for _, r := range results {
		if rank(r.Status) > rank(best.Status) {
			best = r
		}
	}
	return best
}

// unknownHostname is reject_unknown_hostname(): a HELO name with neither
// address nor MX record.
func (e *eval) unknownHostname(name, rn, rc string) status {
	ds := e.ds
	var rs []dns.Result
	for _, t := range []dns.Type{dns.A, dns.AAAA, dns.MX} {
		r := ds.Lookup(e.ctx, name, t)
		rs = append(rs, r)
		if r.Status == dns.OK {
			return dunno
		}
	}
	// A null MX is no success for a host name: a temporary failure of
	// the address lookups still wins (dns_lookup_l()).
	r := hostStatus(rs...)
	switch r.Status {
	case dns.OK:
		return dunno
	case dns.Policy:
		e.l.warn("%s: address or MX lookup error: %s", name, "DNS reply filter drops all results")
		return dunno
	case dns.Retry:
		if e.l.p.heloTempfail == "defer" {
			return e.reject(false, 450, "4.7.1", "<%s>: %s rejected: %s", rn, rc, "Host not found")
		}
		e.deferIfPermit(450, "4.7.1", "<%s>: %s rejected: %s", rn, rc, "Host not found")
		return dunno
	case dns.Invalid:
		return e.reject(false, e.l.p.unknownHost, "4.7.1", "<%s>: %s rejected: %s", rn, rc, "Malformed DNS server reply")
	}
	return e.reject(false, e.l.p.unknownHost, "4.7.1", "<%s>: %s rejected: %s", rn, rc, "Host not found")
}

// unknownAddress is reject_unknown_address(): the domain of an address
// that is not ours must have an MX or address record, and no null MX
// (RFC 7505).
func (e *eval) unknownAddress(addr, rn, rc string) status {
	a, err := e.resolveAddr(addr)
	if err != nil {
		e.l.warn("%v", err)
		return e.dictRetry(addr)
	}
	if a.domain == "" || a.class.Final() || strings.HasPrefix(a.domain, "[") && strings.HasSuffix(a.domain, "]") {
		return dunno
	}
	return e.unknownMailhost(a.domain, rn, rc)
}

func (e *eval) unknownMailhost(name, rn, rc string) status {
	dsn := "4.1.2"
	if rc == classSender {
		dsn = "4.1.8"
	}
	ds := e.ds
	var rs []dns.Result
	mx := ds.MX(e.ctx, name)
	switch mx.Status {
	case dns.OK:
		return dunno
	case dns.NullMX:
		if rc == classSender {
			return e.reject(false, 550, "5.7.27", "<%s>: %s rejected: Domain %s does not accept mail (nullMX)", rn, rc, name)
		}
		return e.reject(false, 556, "5.1.10", "<%s>: %s rejected: Domain %s does not accept mail (nullMX)", rn, rc, name)
	case dns.Invalid, dns.Policy:
		rs = append(rs, mx)
	default:
		rs = append(rs, mx)
		for _, t := range []dns.Type{dns.A, dns.AAAA} {
			r := ds.Lookup(e.ctx, name, t)
			if r.Status == dns.OK {
				return dunno
			}
			rs = append(rs, r)
		}
	}
	r := hostStatus(rs...)
	switch r.Status {
	case dns.Policy:
		e.l.warn("%s: MX or address lookup error: %s", name, "DNS reply filter drops all results")
		return dunno
	case dns.Retry:
		if e.l.p.addrTempfail == "defer" {
			return e.reject(false, 450, dsn, "<%s>: %s rejected: %s", rn, rc, "Domain not found")
		}
		e.deferIfPermit(450, dsn, "<%s>: %s rejected: %s", rn, rc, "Domain not found")
		return dunno
	case dns.Invalid:
		return e.reject(false, e.l.p.unknownAddr, dsn, "<%s>: %s rejected: %s", rn, rc, "Malformed DNS server reply")
	}
	return e.reject(false, e.l.p.unknownAddr, dsn, "<%s>: %s rejected: %s", rn, rc, "Domain not found")
}

// hostAddrs are a host's addresses (the families inet_protocols allows),
// or the failure.
func (e *eval) hostAddrs(host string) ([]netip.Addr, dns.Result) {
	r := e.ds.HostAddrs(e.ctx, host)
	var out []netip.Addr
	for _, rr := range r.RRs {
		if a, err := netip.ParseAddr(rr.Value); err == nil {
			out = append(out, a)
		}
	}
	if r.Status == dns.OK && len(out) > 0 {
		return out, r
	}
	if r.Status == dns.OK {
		r.Status = dns.NotFound
	}
	return nil, r
}

// gaiError words a failed address lookup as getaddrinfo(3) does in
// Postfix's warnings.
func gaiError(r dns.Result) string {
	switch r.Status {
	case dns.Retry:
		return "Temporary failure in name resolution"
	case dns.NotFound, dns.Fail, dns.Policy:
		return "hostname nor servname provided, or not known"
	}
	if r.Reason != "" {
		return r.Reason
	}
	return "Host not found"
}

// serverAccess is check_server_access(): the MX or NS hosts of a domain,
// by name and by address, or the domain's own addresses (type A), against
// an access table.
func (e *eval) serverAccess(spec, name string, typ dns.Type, rn, rc, defACL string) status {
	mx := typ == dns.MX
	tname := typ.String()
	domain := name
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		domain = name[i+1:]
	}
	if strings.HasPrefix(domain, "[") {
		if !mx || !strings.HasSuffix(domain, "]") {
			return dunno
		}
		a, err := netip.ParseAddr(strings.TrimPrefix(domain[1:len(domain)-1], "IPv6:"))
		if err != nil {
			return dunno
		}
		st, _ := e.addrAccessF(spec, addrText(a), rn, rc, defACL)
		return st
	}
	var hosts []string
	var r dns.Result
	if typ == dns.A {
		hosts = []string{domain}
	} else if mx {
		r = e.ds.MX(e.ctx, domain)
		if r.Status == dns.NullMX {
			return dunno
		}
	} else {
		r = e.ds.Lookup(e.ctx, domain, typ)
	}
	switch {
	case typ == dns.A:
	case r.Status == dns.OK:
	case mx && (r.Status == dns.NotFound || r.Status == dns.Fail):
		hosts = []string{domain}
	case !mx && (r.Status == dns.NotFound || r.Status == dns.Fail):
		// no NS records: the parent domains', as Postfix does; when
		// none is left, warnings name what was asked about
		for d := domain; ; {
			i := strings.IndexByte(d, '.')
			if i < 0 || i+1 >= len(d) {
				domain = ""
				break
			}
			d = d[i+1:]
			domain = d
			if r = e.ds.Lookup(e.ctx, d, typ); r.Status != dns.NotFound && r.Status != dns.Fail {
				break
			}
		}
	}
	if hosts == nil {
		if r.Status != dns.OK {
			shown := domain
			if shown == "" {
				shown = name
			}
			e.l.warn("Unable to look up %s host for %s: %s", tname, shown, r.Reason)
			return dunno
		}
		for _, rr := range r.RRs {
			hosts = append(hosts, rr.Value)
		}
	}
	for _, h := range hosts {
		if typ != dns.A {
			if st, found := e.domainAccessF(spec, h, rn, rc, defACL); st != dunno || found {
				return st
			}
		}
		addrs, ar := e.hostAddrs(h)
		if ar.Status != dns.OK {
			e.l.warn("Unable to look up %s host %s for %s %s: %s", tname, h, rc, rn, gaiError(ar))
			continue
		}
		for _, a := range addrs {
			if st, found := e.addrAccessF(spec, addrText(a), rn, rc, defACL); st != dunno || found {
				return st
			}
		}
	}
	return dunno
}

// permitMXBackup is permit_mx_backup(): this host is an MX host for the
// recipient's domain (and, with permit_mx_backup_networks, the primary MX
// hosts are in those networks).
func (e *eval) permitMXBackup(rcpt, rn, rc string) status {
	a, err := e.resolveAddr(rcpt)
	if err != nil {
		e.l.warn("%v", err)
		return e.dictRetry(rcpt)
	}
	if a.domain == "" || a.class.Final() {
		return permitted
	}
	if !e.l.p.untrustedRoute && a.routed {
		return dunno
	}
	if strings.HasPrefix(a.domain, "[") && strings.HasSuffix(a.domain, "]") {
		return dunno
	}
	r := e.ds.MX(e.ctx, a.domain)
	if r.Status == dns.NullMX {
		return dunno
	}
	if r.Status == dns.NotFound || r.Status == dns.Fail {
		if e.hasMyAddr(a.domain, rn, rc) {
			return permitted
		}
		return dunno
	}
	if r.Status != dns.OK {
		e.deferIfReject(450, "4.4.4", "<%s>: %s rejected: Unable to look up mail exchanger information", rn, rc)
		return dunno
	}
	mine := false
	for _, rr := range r.RRs {
		if ok, _ := e.l.resolver.IsLocal(rr.Value); ok {
			mine = true
			break
		}
	}
	if !mine {
		for _, rr := range r.RRs {
			if e.hasMyAddr(rr.Value, rn, rc) {
				mine = true
				break
			}
		}
	}
	if !mine {
		return dunno
	}
	if !e.l.permMX.Empty() && !e.primaryMXAllowed(r.RRs, rn, rc) {
		return dunno
	}
	return permitted
}

func (e *eval) hasMyAddr(host, rn, rc string) bool {
	addrs, r := e.hostAddrs(host)
	if r.Status != dns.OK {
		e.deferIfReject(450, "4.4.4", "<%s>: %s rejected: Unable to look up mail exchanger host %s: %s", rn, rc, host, gaiError(r))
		return false
	}
	for _, a := range addrs {
		if e.l.resolver.IsOwnAddr(a) {
			return true
		}
	}
	return false
}

func (e *eval) primaryMXAllowed(mxs []dns.RR, rn, rc string) bool {
	best := uint16(0xffff)
	for _, m := range mxs {
		if m.Pref < best {
			best = m.Pref
		}
	}
	for _, m := range mxs {
		if m.Pref != best {
			continue
		}
		addrs, r := e.hostAddrs(m.Value)
		if r.Status != dns.OK {
			e.deferIfReject(450, "4.4.4", "<%s>: %s rejected: Unable to look up host %s as mail exchanger", rn, rc, m.Value)
			return false
		}
		for _, a := range addrs {
			if ok, err := e.l.permMX.Match(m.Value, a); !ok || err != nil {
				return false
			}
		}
	}
	return true
}
