package restrict

import (
	"net/netip"
	"strconv"
	"strings"

	"moat/internal/config"
	"moat/internal/dns"
)

// listing is one DNS list answer: whether the query is listed (after the
// reply filter of "domain=127.0.0.[2..11]" or "domain&0.0.0.4") and its
// TXT text.
type listing struct {
	listed bool
	txt    string
}

// splitListDomain separates "zen.example=127.0.0.2" or
// "zen.example&0.0.0.4" into the domain and the filter.
func splitListDomain(arg string) (domain, filter string) {
	if i := strings.IndexAny(arg, "=&"); i >= 0 {
		return arg[:i], arg[i:]
	}
	return arg, ""
}

// query asks a DNS list: A records (filtered), then TXT for the reason.
// A lookup that cannot be answered gives the client the benefit of the
// doubt, as Postfix does, with a warning.
func (e *eval) query(name, filter string) listing {
	r := e.ds.Lookup(e.ctx, name, dns.A)
	if r.Status != dns.OK {
		if r.Status != dns.NotFound && r.Status != dns.Fail {
			why := r.Why
			if why == "" {
				why = r.Reason
			}
			e.l.warn("%s: RBL lookup error: %s", name, why)
		}
		return listing{}
	}
	listed := filter == ""
	for _, rr := range r.RRs {
		if filter != "" && e.l.matchFilter(filter, rr.Value) {
			listed = true
		}
	}
	if !listed {
		return listing{}
	}
	t := e.ds.Lookup(e.ctx, name, dns.TXT)
	var txt string
	switch t.Status {
	case dns.OK:
		for i, rr := range t.RRs {
			if len(txt) >= 500 {
				break
			}
			if i > 0 {
				txt += " / "
			}
			txt += rr.Value
		}
		if len(txt) > 500 {
			txt = txt[:500]
		}
	case dns.NotFound, dns.Fail:
	default:
		e.l.warn("%s: TXT lookup error: %s", name, t.Reason)
	}
	return listing{listed: true, txt: txt}
}

// matchFilter matches an A record against "=d.d.d.d" (each d a number,
// "[n..m]" or "[n;m;...]") or "&mask" (any common bit). Filters named in
// the lists were parsed at start-up; one from an access table's nested
// list is parsed here. A filter that does not parse matches nothing.
func (l *Lists) matchFilter(filter, value string) bool {
	a, err := netip.ParseAddr(value)
	if err != nil || !a.Is4() {
		return false
	}
	f, ok := l.filters[filter]
	if !ok {
		if f, err = dns.ParseFilter(strings.TrimPrefix(filter, "=")); err != nil {
			return false
		}
	}
	return f.Match(a)
}

// rblAddr is reject_rbl_client.
func (e *eval) rblAddr(arg string, addr netip.Addr, rc string) status {
	if !addr.IsValid() {
		return dunno
	}
	domain, filter := splitListDomain(arg)
	l := e.query(dns.ReverseQuery(addr, domain), filter)
	if !l.listed {
		return dunno
	}
	return e.rblReply(l, domain, addrText(addr), rc)
}

// rblDomain is reject_rhsbl_*: the domain of a name or address.
func (e *eval) rblDomain(arg, what, rc string) status {
	d := what
	if i := strings.LastIndexByte(what, '@'); i >= 0 {
		d = what[i+1:]
		if strings.HasPrefix(d, "[") {
			return dunno
		}
	}
	if d == "" {
		return dunno
	}
	domain, filter := splitListDomain(arg)
	l := e.query(d+"."+domain, filter)
	if !l.listed {
		return dunno
	}
	return e.rblReply(l, domain, what, rc)
}

// dnswlAddr is permit_dnswl_client. For safety a permit in the recipient
// lists counts only for a destination the server would accept anyway
// (postconf(5): it is ignored when it would override
// reject_unauth_destination). A list that cannot be asked turns a later
// reject into a deferral.
func (e *eval) dnswlAddr(arg, rc string) status {
	if !e.v.ClientAddr.IsValid() {
		return dunno
	}
	domain, filter := splitListDomain(arg)
	return e.whitelisted(dns.ReverseQuery(e.v.ClientAddr, domain), filter, rc)
}

// rhswl is permit_rhswl_client: the client's verified name.
func (e *eval) rhswl(arg, rc string) status {
	n := e.clientName()
	if n == "unknown" {
		return dunno
	}
	domain, filter := splitListDomain(arg)
	return e.whitelisted(n+"."+domain, filter, rc)
}

func (e *eval) whitelisted(name, filter, rc string) status {
	r := e.ds.Lookup(e.ctx, name, dns.A)
	switch r.Status {
	case dns.OK:
	case dns.NotFound, dns.Fail:
		return dunno
	default:
		why := r.Why
		if why == "" {
			why = r.Reason
		}
		e.l.warn("%s: DNSWL lookup error: %s", name, why)
		e.deferIfReject(450, "4.7.1", "<%s>: %s rejected: %s", e.namaddr(), classClient, "Service unavailable")
		return dunno
	}
	listed := filter == ""
	for _, rr := range r.RRs {
		if filter != "" && e.l.matchFilter(filter, rr.Value) {
			listed = true
		}
	}
	if !listed {
		return dunno
	}
	if e.recipient != nil && rc == classRecipient {
		if e.permitAuthDestination(*e.recipient) != permitted {
			return dunno
		}
	}
	return permitted
}

// rblReply is rbl_reject_reply(): rbl_reply_maps' template for the list's
// domain, else default_rbl_reply, with $rbl_* expanded.
func (e *eval) rblReply(l listing, domain, what, rc string) status {
	tmpl := ""
	if e.l.rblReply != nil {
		v, ok, err := e.l.rblReply.Lookup(strings.ToLower(domain))
		if err != nil {
			e.l.warn("rbl_reply_maps lookup error for \"%s\": %v", domain, err)
			return e.dictRetry(domain)
		}
		if ok {
			tmpl = v
		}
	}
	var text string
	for {
		def := tmpl == ""
		if def {
			tmpl = e.l.p.defRBLReply
		}
		var ok bool
		text, ok = e.expandRBL(tmpl, domain, what, rc, l.txt)
		if ok {
			break
		}
		if def {
			e.l.warn("rbl_reject_reply: bad default rbl reply template: %s", tmpl)
			return e.configError()
		}
		e.l.warn("rbl_reject_reply: bad rbl reply template for domain %s: %s", domain, tmpl)
		tmpl = ""
	}
	if len(text) < 4 || (text[0] != '4' && text[0] != '5') || !isDigit(text[1]) || !isDigit(text[2]) || text[3] != ' ' {
		e.l.warn("rbl response code configuration error: %s", text)
		return e.reject(false, 450, "4.7.1", "Service unavailable")
	}
	code, _ := strconv.Atoi(text[:3])
	dsn, t := splitDSN("4.7.1", text[4:])
	if t == "" {
		t = "Service unavailable"
	}
	return e.reject(false, code, dsnFix(dsn, rc), "%s", t)
}

// expandRBL expands a reply template: $rbl_code, $rbl_domain,
// $rbl_reason (or $rbl_txt), $rbl_what, $rbl_class, and the session's
// $client, $client_address, $client_name, $reverse_client_name,
// $helo_name, $sender*, $recipient*. Values pass smtpd_expansion_filter;
// other main.cf names are not revealed.
func (e *eval) expandRBL(tmpl, domain, what, rc, txt string) (string, bool) {
	vals := map[string]string{
		"rbl_code": strconv.Itoa(e.l.p.rbl), "rbl_domain": domain, "rbl_reason": txt, "rbl_txt": txt,
		"rbl_what": what, "rbl_class": rc,
		"client": e.namaddr(), "client_address": addrText(e.v.ClientAddr), "client_name": e.clientName(),
		"reverse_client_name": e.reverseName(),
	}
	vals["helo_name"] = ""
	if e.helo != nil {
		vals["helo_name"] = *e.helo
	}
	addrVals := func(prefix string, p *string) {
		if p == nil {
			for _, s := range []string{"", "_name", "_domain"} {
				vals[prefix+s] = ""
			}
			return
		}
		a := *p
		if a == "" {
			vals[prefix], vals[prefix+"_name"], vals[prefix+"_domain"] = "<>", "<>", ""
			return
		}
		vals[prefix] = a
		if i := strings.LastIndexByte(a, '@'); i >= 0 {
			vals[prefix+"_name"], vals[prefix+"_domain"] = a[:i], a[i+1:]
		} else {
			vals[prefix+"_name"], vals[prefix+"_domain"] = a, ""
		}
	}
	addrVals("sender", e.sender)
	addrVals("recipient", e.recipient)
	bad := false
	x := config.Expander{
		Lookup: func(name string) (string, bool) {
			v, ok := vals[name]
			if !ok {
				e.l.warn("unknown macro name \"%s\" in expansion request", name)
				bad = true
				return "", false
			}
			if v == "" {
				return "", false
			}
			return e.filterExpansion(v), true
		},
	}
	out, errs := x.Expand(tmpl)
	if errs != 0 || bad {
		return out, false
	}
	return out, true
}

// filterExpansion replaces characters outside smtpd_expansion_filter
// with "_", as mac_expand() does with a filter.
func (e *eval) filterExpansion(v string) string {
	f := e.l.p.expandFilter
	b := []byte(v)
	for i, c := range b {
		if strings.IndexByte(f, c) < 0 {
			b[i] = '_'
		}
	}
	return string(b)
}
