package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	mdns "github.com/miekg/dns"
)

// Postfix's dns_strerror(3) texts, which restrictions print in replies and
// warnings.
const (
	reasonNotFound = "Host not found"
	reasonRetry    = "Host not found, try again"
	reasonNoData   = "Host found but no data record of requested type"
	reasonInvalid  = "Malformed or unexpected name server reply"
	reasonNoRecov  = "Non-recoverable error"
	reasonPolicy   = "DNS reply filter drops all results"
	reasonFilter   = "Invalid DNS reply filter syntax"
	reasonBadName  = "Malformed domain name"
)

// maxCNAME bounds CNAME chasing, as Postfix's dns_lookup (DNS_MAX_CNAME).
const maxCNAME = 10

// lookup asks the servers for name/t, follows CNAMEs and, when filter is
// set, applies the reply filter; it does not cache.
func (r *Resolver) lookup(ctx context.Context, name string, t Type, filter bool) Result {
	if !validName(name) {
		return r.result(Invalid, name, t, reasonBadName, nil)
	}
	qname := name
	var rrs []RR
	for hop := 0; ; hop++ {
		msg, err := r.exchange(ctx, qname, t)
		if errors.Is(err, errMalformed) {
			return r.result(Invalid, name, t, reasonInvalid, nil)
		}
		if err != nil {
			return r.result(Retry, name, t, reasonRetry, nil)
		}
		switch msg.Rcode {
		case mdns.RcodeSuccess:
		case mdns.RcodeNameError:
			return r.result(Fail, name, t, reasonNotFound, nil)
		case mdns.RcodeServerFailure, mdns.RcodeRefused:
			return r.result(Retry, name, t, reasonRetry, nil)
		default:
			// FORMERR, NOTIMP and the rest: res_query's NO_RECOVERY,
			// which Postfix maps to DNS_FAIL.
			return r.result(Fail, name, t, reasonNoRecov, nil)
		}
		var next string
		rrs, next = collect(msg, qname, t)
		if len(rrs) > 0 || next == "" {
			break
		}
		// The server gave a CNAME without its target's records.
		if hop >= maxCNAME {
			return r.result(Invalid, name, t, reasonInvalid, nil)
		}
		qname = next
	}
	if len(rrs) == 0 {
		return r.result(NotFound, name, t, reasonNoData, nil)
	}
	if filter && r.filter != nil {
		kept, err := r.applyFilter(rrs)
		if err != nil {
			res := r.result(Retry, name, t, reasonFilter, nil)
			res.Why = fmt.Sprintf("Error looking up name=%s type=%s: %s", name, t, reasonFilter)
			return res
		}
		if len(kept) == 0 {
			res := r.result(Policy, name, t, reasonPolicy, nil)
			res.Why = fmt.Sprintf("Error looking up name=%s type=%s: %s", name, t, reasonPolicy)
			return res
		}
		rrs = kept
	}
	return Result{Status: OK, RRs: rrs}
}

// result builds a Result with Postfix's dns_lookup explanation.
func (r *Resolver) result(st Status, name string, t Type, reason string, rrs []RR) Result {
	res := Result{Status: st, RRs: rrs, Reason: reason}
	if st != OK {
		res.Why = fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: %s", name, t, reason)
	}
	return res
}

// validName is a loose RFC 1035 check (labels of 1..63 octets, 255 in all)
// so a malformed name gives Invalid instead of a query; it does not impose
// hostname syntax, because DNS list queries and TXT owners need not obey it.
func validName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for l := range strings.SplitSeq(name, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; c <= ' ' || c >= 0x7f || c == '\\' || c == '"' || c == '(' || c == ')' || c == ';' || c == '@' || c == '$' {
				return false
			}
		}
	}
	return true
}

// collect picks the answer records of type t owned by qname or a CNAME
// target reached from it within the message; next is the final CNAME
// target when the message has no records for it.
func collect(msg *mdns.Msg, qname string, t Type) (rrs []RR, next string) {
	owner := strings.ToLower(mdns.Fqdn(qname))
	cnames := map[string]string{}
	for _, rr := range msg.Answer {
		if c, ok := rr.(*mdns.CNAME); ok {
			cnames[strings.ToLower(c.Hdr.Name)] = strings.ToLower(c.Target)
		}
	}
	for i := 0; i < maxCNAME; i++ {
		target, ok := cnames[owner]
		if !ok || t == Type(mdns.TypeCNAME) {
			break
		}
		owner = target
	}
	for _, rr := range msg.Answer {
		h := rr.Header()
		if Type(h.Rrtype) != t || !strings.EqualFold(h.Name, owner) {
			continue
		}
		if x, ok := convert(rr); ok {
			rrs = append(rrs, x)
		}
	}
	if len(rrs) == 0 && owner != strings.ToLower(mdns.Fqdn(qname)) {
		next = strings.TrimSuffix(owner, ".")
	}
	return rrs, next
}

// convert reduces a record to an RR.
func convert(rr mdns.RR) (RR, bool) {
	h := rr.Header()
	x := RR{Name: strings.TrimSuffix(h.Name, "."), Type: Type(h.Rrtype), TTL: h.Ttl}
	switch v := rr.(type) {
	case *mdns.A:
		x.Value = v.A.String()
	case *mdns.AAAA:
		x.Value = v.AAAA.String()
	case *mdns.MX:
		x.Pref = v.Preference
		x.Value = strings.TrimSuffix(v.Mx, ".")
	case *mdns.NS:
		x.Value = strings.TrimSuffix(v.Ns, ".")
	case *mdns.PTR:
		x.Value = strings.TrimSuffix(v.Ptr, ".")
	case *mdns.TXT:
		// Postfix joins a TXT record's character strings without
		// separators (dns_lookup.c, T_TXT).
		x.Value = strings.Join(v.Txt, "")
	default:
		return RR{}, false
	}
	return x, true
}

// Text is the record in the form smtpd_dns_reply_filter matches and
// Postfix logs: "name. ttl IN type [preference] value", names ending in
// "." (postconf(5) smtp_dns_reply_filter).
func (x RR) Text() string {
	v := x.Value
	switch x.Type {
	case MX:
		v = fmt.Sprintf("%d %s.", x.Pref, x.Value)
		if x.Value == "" {
			v = fmt.Sprintf("%d .", x.Pref)
		}
	case NS, PTR:
		v += "."
	}
	return fmt.Sprintf("%s. %d IN %s %s", x.Name, x.TTL, x.Type, v)
}

// applyFilter drops the records smtpd_dns_reply_filter says to IGNORE,
// the only action Postfix implements (postconf(5)). A table error or any
// other action is an error: Postfix then fails the lookup (temporarily)
// instead of using unfiltered data.
func (r *Resolver) applyFilter(rrs []RR) ([]RR, error) {
	var kept []RR
	for _, x := range rrs {
		text := x.Text()
		v, found, err := r.filter.Lookup(text)
		if err != nil {
			r.warn(fmt.Sprintf("smtpd_dns_reply_filter: lookup error for %q: %v", text, err))
			return nil, err
		}
		if !found {
			kept = append(kept, x)
			continue
		}
		action, _, _ := strings.Cut(strings.TrimSpace(v), " ")
		switch {
		case strings.EqualFold(action, "IGNORE"):
			r.info("ignoring DNS RR: " + text)
		default:
			r.warn(fmt.Sprintf("smtpd_dns_reply_filter: unknown DNS filter action: %q", action))
			return nil, fmt.Errorf("unknown DNS filter action %q", action)
		}
	}
	return kept, nil
}

// errNoServers is returned when every server failed to answer.
var errNoServers = errors.New("no name server answered")

// errMalformed is returned when the last answer could not be parsed:
// Postfix's DNS_INVAL ("Malformed or unexpected name server reply"), as
// opposed to no answer at all.
var errMalformed = errors.New("malformed name server reply")

// exchange asks each server in turn, a few attempts each over UDP, and
// repeats a truncated answer over TCP (RFC 7766).
func (r *Resolver) exchange(ctx context.Context, name string, t Type) (*mdns.Msg, error) {
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), uint16(t))
	q.RecursionDesired = true
	q.SetEdns0(1232, false)
	lastErr := errNoServers
	for attempt := 0; attempt < r.attempts; attempt++ {
		for _, srv := range r.servers {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			msg, err := r.once(ctx, "udp", srv, q)
			if err == nil && msg.Truncated {
				msg, err = r.once(ctx, "tcp", srv, q)
			}
			if err != nil {
				lastErr = err
				continue
			}
			if msg.Rcode == mdns.RcodeServerFailure || msg.Rcode == mdns.RcodeRefused {
				// Another server may know better; remember this answer.
				lastErr = nil
				if srv == r.servers[len(r.servers)-1] && attempt == r.attempts-1 {
					return msg, nil
				}
				continue
			}
			return msg, nil
		}
	}
	return nil, fmt.Errorf("dns %s %s: %w", name, t, lastErr)
}

// once sends one query over one transport, bounded by the per-attempt
// timeout and ctx.
func (r *Resolver) once(ctx context.Context, network, srv string, q *mdns.Msg) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &mdns.Client{Net: network, Timeout: r.timeout, Dialer: &net.Dialer{Timeout: r.timeout}}
	m := q.Copy()
	m.Id = mdns.Id()
	msg, _, err := c.ExchangeContext(ctx, m, srv)
	var perr *mdns.Error
	if errors.As(err, &perr) && ctx.Err() == nil {
		// miekg/dns reports a reply it cannot unpack as *dns.Error;
		// network failures and timeouts are net errors.
		return nil, fmt.Errorf("%s: %w: %v", srv, errMalformed, err)
	}
	if err != nil {
		return nil, err
	}
	if msg.Id != m.Id {
		return nil, fmt.Errorf("dns: reply id mismatch from %s", srv)
	}
	return msg, nil
}
