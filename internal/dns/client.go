package dns

import (
	"context"
	"net/netip"
	"strings"

	"moat/internal/hostname"
)

// Postfix peer codes (smtpd.h SMTPD_PEER_CODE_*), which
// reject_unknown_client_hostname and friends turn into 450 or 550 and
// policy servers see.
const (
	PeerOK       = 2 // name found (and, for Name, verified)
	PeerTempFail = 4 // temporary lookup failure
	PeerPermFail = 5 // permanent lookup failure
	PeerForged   = 6 // the name does not map back to the address
)

// ClientName is the result of looking up an SMTP client's name. Name is
// the verified name (forward-confirmed reverse DNS) and Reverse the PTR
// name alone; each is "unknown" when absent, with Status and
// ReverseStatus the peer codes.
type ClientName struct {
	Name, Reverse         string
	Status, ReverseStatus int
}

// Unknown is the name Postfix gives a client whose name is not known.
const Unknown = "unknown"

// ClientName finds addr's name as Postfix's smtpd_peer.c does: the PTR
// record gives the reverse name (malformed names count as absent); the
// name is verified only when a forward lookup of it gives addr back.
// A temporary failure at either step gives code 4, so
// reject_unknown_client_hostname answers 450 and not 550.
func (s *Session) ClientName(ctx context.Context, addr netip.Addr) ClientName {
	cn := ClientName{Name: Unknown, Reverse: Unknown, Status: PeerPermFail, ReverseStatus: PeerPermFail}
	addr = addr.Unmap()
	if !addr.IsValid() {
		return cn
	}
	var res Result
	if n, ok := s.r.hosts.name(addr); ok {
		res = Result{Status: OK, RRs: []RR{{Type: PTR, Value: n}}}
	} else {
		res = s.lookup(ctx, ReverseQuery(addr, ptrDomain(addr)), PTR, true)
	}
	switch res.Status {
	case OK:
	case Retry:
		cn.Status, cn.ReverseStatus = PeerTempFail, PeerTempFail
		return cn
	default:
		return cn
	}
	// getnameinfo(3), which Postfix uses, yields the first PTR name only;
	// a numeric or malformed name counts as no name (smtpd_peer.c).
	name := strings.ToLower(res.RRs[0].Value)
	if hostname.ValidAddr(name) {
		s.r.warn("numeric hostname: " + name)
		return cn
	}
	if !hostname.Valid(name) {
		return cn
	}
	cn.Reverse, cn.ReverseStatus = name, PeerOK
	// Postfix asks for the client's own address family only
	// (hostname_to_sockaddr_pf).
	t := A
	if addr.Is6() {
		t = AAAA
	}
	var fwd Result
	if as, ok := s.r.hosts.addrs(name); ok {
		fwd.Status = OK
		for _, a := range as {
			fwd.RRs = append(fwd.RRs, RR{Type: t, Value: a.String()})
		}
	} else {
		fwd = s.lookup(ctx, name, t, true)
	}
	switch fwd.Status {
	case OK:
	case Retry:
		s.r.warn("hostname " + name + " does not resolve to address " + addr.String() + ": " + gaiError(fwd.Status))
		cn.Status = PeerTempFail
		return cn
	default:
		s.r.warn("hostname " + name + " does not resolve to address " + addr.String() + ": " + gaiError(fwd.Status))
		cn.Status = PeerForged
		return cn
	}
	for _, x := range fwd.RRs {
		if a, err := netip.ParseAddr(x.Value); err == nil && a.Unmap() == addr {
			cn.Name, cn.Status = name, PeerOK
			return cn
		}
	}
	s.r.warn("hostname " + name + " does not resolve to address " + addr.String())
	cn.Status = PeerForged
	return cn
}

// gaiError is the getaddrinfo(3) message (gai_strerror, glibc's wording)
// Postfix's smtpd_peer.c prints when the client name does not resolve.
func gaiError(st Status) string {
	switch st {
	case Retry:
		return "Temporary failure in name resolution"
	case NotFound:
		return "No address associated with hostname"
	}
	return "Name or service not known"
}
