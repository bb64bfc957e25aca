package smtpd

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"moat/internal/dns"
	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/matchlist"
	"moat/internal/smtp"
)

// nameLookupTimeout bounds the reverse and forward DNS queries for the
// client name together, so a slow resolver delays the greeting by seconds
// at most; running out is a temporary failure (peer code 4).
const nameLookupTimeout = 10 * time.Second

// readDNS takes the service's resolver from Deps or, without one, builds
// it from the configuration (dns_servers, smtpd_dns_reply_filter,
// inet_protocols) now: before a jailed smtpd enters its chroot, so
// /etc/resolv.conf and /etc/hosts are read where they are.
func (s *Server) readDNS(mo maps.Options) error {
	if s.d.Resolver != nil {
		s.dns = s.d.Resolver
		return nil
	}
	log := s.d.Log
	o, err := dns.OptionsFromConfig(s.d.Config, mo, func(m string) { log.Warning("%s", m) })
	if err != nil {
		return err
	}
	o.Info = func(m string) { log.Info("%s", m) }
	r, err := dns.New(o)
	if err != nil {
		if o.ReplyFilter != nil {
			o.ReplyFilter.Close()
		}
		return err
	}
	s.dns, s.ownDNS = r, true
	return nil
}

// closeDNS closes the resolver readDNS built (not one from Deps).
func (s *Server) closeDNS() error {
	if !s.ownDNS {
		return nil
	}
	return s.dns.Close()
}

// identify sets the client's address and name, the debug_peer_list verbose
// logger, and the bare-newline policy for this client.
func (s *session) identify() {
	var addr netip.Addr
	var port uint16
	if ap, err := netip.ParseAddrPort(s.conn.RemoteAddr().String()); err == nil {
		addr, port = ap.Addr().Unmap(), ap.Port()
	}
	s.client = maillog.Client{Addr: addr, Port: port, LogPort: s.set.portLogging}
	if ap, err := netip.ParseAddrPort(s.conn.LocalAddr().String()); err == nil {
		s.server = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	// smtpd_peer.c: without a lookup (smtpd_peername_lookup = no) or an
	// address, both names are "unknown" with the permanent code.
	s.peer = dns.ClientName{Name: dns.Unknown, Reverse: dns.Unknown, Status: dns.PeerPermFail, ReverseStatus: dns.PeerPermFail}
	if s.srv.dns != nil {
		s.dns = s.srv.dns.Session()
	}
	if s.set.peernameLookup && s.dns != nil && addr.IsValid() {
		ctx, cancel := context.WithTimeout(s.ctx, nameLookupTimeout)
		s.peer = s.dns.ClientName(ctx, addr)
		cancel()
		if s.peer.Status == dns.PeerOK {
			s.client.Name = s.peer.Name
		}
	}
	if s.set.debugLevel > 0 && s.listMatch(s.set.debugPeers) {
		s.log = s.log.WithVerbose(s.set.debugLevel)
	}
	s.bare = s.set.bareNewline
	// A table that fails leaves the client under the stricter policy.
	if s.set.bareNewline != smtp.BareNewlineNo && s.listMatch(s.set.bareExclusions) {
		s.bare = smtp.BareNewlineNo
	}
}

// listMatch asks a Host match list about the client; a table failure is
// logged and counts as no match.
func (s *session) listMatch(l *matchlist.List) bool {
	if l == nil || l.Empty() {
		return false
	}
	ok, err := l.Match(s.clientName(), s.client.Addr)
	if err != nil {
		s.log.Warning("%v", err)
		return false
	}
	return ok
}

// peerView gives a restriction the client name lookup's results and the
// session's DNS cache.
func (s *session) peerView(v *View) {
	v.DNS = s.dns
	v.ReverseClientName = s.peer.Reverse
	v.ClientNameStatus = s.peer.Status
	v.ReverseNameStatus = s.peer.ReverseStatus
}

// lookupClientName is the verified client name a session gets without a
// configured resolver (the system's resolv.conf and hosts file), "" when
// it is not verified; tests use it to predict the name in log lines.
func lookupClientName(ctx context.Context, a netip.Addr) string {
	r, err := dns.New(dns.Options{HostsFile: "/etc/hosts", IPv4: true, IPv6: true})
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, nameLookupTimeout)
	defer cancel()
	if cn := r.Session().ClientName(ctx, a); cn.Status == dns.PeerOK {
		return cn.Name
	}
	return ""
}

// peekConn returns up to max bytes waiting in the kernel's receive buffer
// without consuming them or blocking (recv with MSG_PEEK|MSG_DONTWAIT), for
// the check that the client did not talk ahead of the server. Connections
// without a descriptor (tests' net.Pipe) report nothing.
func peekConn(c net.Conn, max int) []byte {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	buf := make([]byte, max)
	n := 0
	_ = raw.Read(func(fd uintptr) bool {
		m, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == nil && m > 0 {
			n = m
		}
		return true
	})
	return buf[:n]
}

// commandName is the counter name of a verb in the disconnect record.
func commandName(verb string) string {
	switch verb {
	case "HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT",
		"VRFY", "ETRN", "STARTTLS", "AUTH", "XCLIENT", "XFORWARD":
		return strings.ToLower(verb)
	}
	return "unknown"
}

// stateName is what "after" names in Postfix's records.
func stateName(name string) string {
	if name == "unknown" {
		return maillog.StateUnknown
	}
	return strings.ToUpper(name)
}
