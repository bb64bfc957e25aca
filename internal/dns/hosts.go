package dns

import (
	"cmp"
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// HostAddrs looks up name's A and/or AAAA records, as inet_protocols
// allows (Postfix's dns_lookup_l with T_A, T_AAAA). The result is OK when
// either family has an address; otherwise the failure Postfix ranks
// highest (see worse), so a temporary error is never reported as a
// permanent one. Authentic is set only when every family's answer was.
func (s *Session) HostAddrs(ctx context.Context, name string) Result {
	var types []Type
	if s.r.ipv4 {
		types = append(types, A)
	}
	if s.r.ipv6 {
		types = append(types, AAAA)
	}
	var out, bad Result
	found, failed := false, false
	authentic := true
	for _, t := range types {
		res := s.Lookup(ctx, name, t)
		// Every family's answer (a denial included) must be
		// authenticated: a forged "no AAAA" could hide a secure
		// address.
		authentic = authentic && res.Authentic
		if res.Status == OK {
			out.RRs = append(out.RRs, res.RRs...)
			found = true
			continue
		}
		if !failed || worse(res.Status, bad.Status) {
			bad, failed = res, true
		}
	}
	if found {
		out.Status = OK
		out.Authentic = authentic
		return out
	}
	bad.RRs = nil
	return bad
}

// worse orders failures for HostAddrs as Postfix's dns_lookup_l ranks
// them (dns.h: DNS_POLICY, then DNS_RETRY, DNS_INVAL, DNS_FAIL,
// DNS_NULLMX, DNS_NOTFOUND), so a filtered or temporary answer for one
// family is never hidden by "not found" for the other.
func worse(a, b Status) bool {
	rank := func(s Status) int {
		switch s {
		case Policy:
			return 6
		case Retry:
			return 5
		case Invalid:
			return 4
		case Fail:
			return 3
		case NullMX:
			return 2
		case NotFound:
			return 1
		}
		return 0
	}
	return rank(a) > rank(b)
}

// MX looks up domain's MX records, sorted by preference with equal
// preferences shuffled (RFC 5321 section 5.1). An MX naming the root
// ("MX 0 .") is RFC 7505's null MX: Status NullMX, as Lookup gives it, the
// records kept in RRs.
func (s *Session) MX(ctx context.Context, domain string) Result {
	res := s.Lookup(ctx, domain, MX)
	if res.Status != OK {
		return res
	}
	rrs := slices.Clone(res.RRs)
	rand.Shuffle(len(rrs), func(i, j int) { rrs[i], rrs[j] = rrs[j], rrs[i] })
	slices.SortStableFunc(rrs, func(a, b RR) int { return cmp.Compare(a.Pref, b.Pref) })
	res.RRs = rrs
	return res
}

// ReverseQuery builds the DNS list or PTR name for addr under domain:
// "2.0.0.127.zen.example" for IPv4, the 32 reversed nibbles for IPv6 (RFC
// 5782 section 2.4, RFC 3596 section 2.5). An IPv4-mapped IPv6 address is
// queried as IPv4, as Postfix does for its clients.
func ReverseQuery(addr netip.Addr, domain string) string {
	addr = addr.Unmap()
	var b strings.Builder
	if addr.Is4() {
		a := addr.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(a[i])))
			b.WriteByte('.')
		}
	} else {
		a := addr.As16()
		const hex = "0123456789abcdef"
		for i := 15; i >= 0; i-- {
			b.WriteByte(hex[a[i]&0xf])
			b.WriteByte('.')
			b.WriteByte(hex[a[i]>>4])
			b.WriteByte('.')
		}
	}
	b.WriteString(strings.TrimSuffix(domain, "."))
	return b.String()
}

// ptrDomain is the reverse tree for addr's family.
func ptrDomain(addr netip.Addr) string {
	if addr.Unmap().Is4() {
		return "in-addr.arpa"
	}
	return "ip6.arpa"
}
