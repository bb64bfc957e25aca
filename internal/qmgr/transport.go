package qmgr

import (
	"strings"
)

// route is a recipient's delivery: the transport (a master.cf service name
// in Postfix, "local", "smtp", "discard"...) and its next hop.
type route struct {
	transport string
	nexthop   string
}

// parseTransport splits a transport setting "transport:nexthop"
// (transport(5) RESULT FORMAT; local_transport, default_transport). An empty
// next hop becomes the recipient's domain, as trivial-rewrite(8) does for
// default_transport, so discard(8) and error(8) log the domain.
func parseTransport(value, domain string) route {
	value = strings.TrimSpace(value)
	name, nexthop, _ := strings.Cut(value, ":")
	if nexthop == "" {
		nexthop = domain
	}
	return route{transport: name, nexthop: nexthop}
}

// splitAddress splits a recipient in internal form at its last '@' (a
// quoted local part may contain '@'). An address without a domain is
// local-only: Postfix appends $myorigin before queueing, and mail that
// arrives without one anyway is taken as local.
func splitAddress(addr string) (local, domain string) {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[:i], addr[i+1:]
	}
	return addr, ""
}

// splitDSN splits an RFC 3463 status code off the front of text ("5.7.1
// no such user") as Postfix's dsn_split does for discard(8) and error(8)
// next hops; when text does not start with one, def is the status and text
// is kept whole.
func splitDSN(def, text string) (dsn, rest string) {
	code, after, _ := strings.Cut(text, " ")
	if validDSN(code) {
		return code, strings.TrimLeft(after, " ")
	}
	return def, text
}

// validDSN reports whether s is class.subject.detail with class 2, 4 or 5,
// a subject of 1-3 digits and a detail of 1-3 digits (RFC 3463 section 2).
func validDSN(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || strings.IndexByte("245", parts[0][0]) < 0 {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
