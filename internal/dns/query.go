package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	mdns "github.com/miekg/dns"

	"moat/internal/hostname"
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
	reasonNullMX   = "Domain does not accept mail (nullMX)"
)

// maxCNAME bounds CNAME chasing, as Postfix's dns_lookup (DNS_MAX_CNAME).
const maxCNAME = 10

// lookup asks the servers for name/t, follows CNAMEs and, when filter is
// set, applies the reply filter; it does not cache. Its statuses and
// texts follow Postfix's dns_lookup.c.
func (r *Resolver) lookup(ctx context.Context, name string, t Type, filter bool) (res Result) {
	// Every reply on the way (each CNAME hop) must be authenticated for
	// the answer to be; no reply at all is not.
	asked, authentic := false, true
	defer func() { res.Authentic = r.dnssec && asked && authentic }()
	// dns_lookup refuses numeric names (some servers invent A records
	// for them) and malformed ones without asking: "not found".
	if hostname.ValidAddr(name) || !validRRName(name) {
		return Result{Status: NotFound, Reason: reasonNotFound,
			Why: fmt.Sprintf("Name service error for %s: invalid host or domain name", name)}
	}
	qname := name
	var rrs []RR
	for hop := 0; ; hop++ {
		if hop == maxCNAME {
			r.warn("dns_lookup: Name server loop for " + name)
			return Result{Status: NotFound, Reason: reasonNotFound, Why: "Name server loop for " + name}
		}
		msg, err := r.exchange(ctx, qname, t)
		if err == nil {
			asked = true
			authentic = authentic && msg.AuthenticatedData
		}
		if err != nil {
			// No answer, or one that does not parse: Postfix's
			// resolver and its reply parser both call that TRY_AGAIN.
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
		var bad bool
		rrs, next, bad = r.collect(msg, qname, t)
		if bad {
			return Result{Status: Invalid, Reason: reasonInvalid,
				Why: fmt.Sprintf("Name service error for name=%s type=%s: %s", name, t, reasonInvalid)}
		}
		if len(rrs) > 0 || next == "" {
			break
		}
		// The server gave a CNAME without its target's records.
		qname = next
	}
	if len(rrs) == 0 {
		return r.result(NotFound, name, t, reasonNoData, nil)
	}
	if t == MX {
		for _, x := range rrs {
			if x.Value == "" {
				// RFC 7505 null MX: dns_get_answer reports DNS_NULLMX
				// for any MX with the root as its host, before the
				// reply filter sees the records.
				return Result{Status: NullMX, RRs: rrs, Reason: reasonNullMX,
					Why: "Domain " + name + " does not accept mail (nullMX)"}
			}
		}
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

// result builds a Result with Postfix's dns_query explanation.
func (r *Resolver) result(st Status, name string, t Type, reason string, rrs []RR) Result {
	res := Result{Status: st, RRs: rrs, Reason: reason}
	if st != OK {
		res.Why = fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: %s", name, t, reason)
	}
	return res
}

// validRRName is dns_lookup.c's valid_rr_name: a numeric name passes, a
// name must otherwise be a valid hostname, a leading "*" label allowed
// (valid_hostname with DO_WILDCARD).
func validRRName(name string) bool {
	if hostname.ValidAddr(name) {
		return true
	}
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		name = rest
	}
	return hostname.Valid(name)
}

// collect picks the answer records of type t owned by qname or a CNAME
// target reached from it within the message; next is the final CNAME
// target when the message has no records for it. bad is Postfix's
// DNS_INVAL: a record's owner or a CNAME target is not a valid name, or
// every record of the type names an invalid host (those are skipped, with
// Postfix's warning, when others remain).
func (r *Resolver) collect(msg *mdns.Msg, qname string, t Type) (rrs []RR, next string, bad bool) {
	owner := strings.ToLower(mdns.Fqdn(qname))
	cnames := map[string]string{}
	for _, rr := range msg.Answer {
		h := rr.Header()
		if !validRRName(strings.TrimSuffix(h.Name, ".")) {
			r.warn(fmt.Sprintf("malformed domain name in resource name of %s record for %s: %.100s", Type(h.Rrtype), qname, h.Name))
			return nil, "", true
		}
		if c, ok := rr.(*mdns.CNAME); ok {
			if !validRRName(strings.TrimSuffix(c.Target, ".")) {
				r.warn(fmt.Sprintf("malformed domain name in resource data of CNAME record for %s: %.100s", qname, c.Target))
				return nil, "", true
			}
			cnames[strings.ToLower(h.Name)] = strings.ToLower(c.Target)
		}
	}
	for i := 0; i < maxCNAME; i++ {
		target, ok := cnames[owner]
		if !ok || t == Type(mdns.TypeCNAME) {
			break
		}
		owner = target
	}
	invalid := false
	for _, rr := range msg.Answer {
		h := rr.Header()
		if Type(h.Rrtype) != t || !strings.EqualFold(h.Name, owner) {
			continue
		}
		x, ok := convert(rr)
		if !ok {
			continue
		}
		switch x.Type {
		case MX, NS, PTR:
			if x.Value != "" && !validRRName(x.Value) {
				r.warn(fmt.Sprintf("malformed domain name in resource data of %s record for %s: %.100s", x.Type, qname, x.Value))
				invalid = true
				continue
			}
		}
		rrs = append(rrs, x)
	}
	if len(rrs) == 0 && invalid {
		return nil, "", true
	}
	if len(rrs) == 0 && owner != strings.ToLower(mdns.Fqdn(qname)) {
		next = strings.TrimSuffix(owner, ".")
	}
	return rrs, next, false
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
	case *mdns.TLSA:
		x.Usage, x.Selector, x.Matching = v.Usage, v.Selector, v.MatchingType
		x.Value = strings.ToLower(v.Certificate)
	case *mdns.TXT:
		// Postfix keeps a TXT record's first character-string, its
		// unprintable bytes made spaces (dns_lookup.c dns_get_rr).
		if len(v.Txt) > 0 {
			x.Value = txtText(v.Txt[0])
		}
		x.Strings = v.Txt
	default:
		return RR{}, false
	}
	return x, true
}

// txtText undoes miekg/dns's presentation escapes in a TXT string (a
// backslash and three digits for a byte, a backslash before a special
// character) and replaces bytes Postfix would not print with spaces.
func txtText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
				n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
				if n <= 255 {
					c = byte(n)
					i += 3
				}
			} else {
				i++
				c = s[i]
			}
		}
		if c < ' ' || c > '~' {
			c = ' '
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

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
	case TLSA:
		v = fmt.Sprintf("%d %d %d %s", x.Usage, x.Selector, x.Matching, x.Value)
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

// exchange asks each server in turn, a few attempts each over UDP, and
// repeats a truncated answer over TCP (RFC 7766).
func (r *Resolver) exchange(ctx context.Context, name string, t Type) (*mdns.Msg, error) {
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), uint16(t))
	q.RecursionDesired = true
	// With DNSSEC the DO bit asks for signatures and the AD bit for the
	// validation result (RFC 3225, RFC 6840 section 5.7).
	q.SetEdns0(1232, r.dnssec)
	q.AuthenticatedData = r.dnssec
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
	if err != nil {
		return nil, err
	}
	if msg.Id != m.Id {
		return nil, fmt.Errorf("dns: reply id mismatch from %s", srv)
	}
	return msg, nil
}
