package smtpd

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"moat/internal/maillog"
	"moat/internal/matchlist"
	"moat/internal/smtp"
)

// nameLookupTimeout bounds the reverse and forward DNS queries for the
// client name, so a slow resolver delays the greeting by seconds at most.
const nameLookupTimeout = 5 * time.Second

// identify sets the client's address and name, the debug_peer_list verbose
// logger, and the bare-newline policy for this client.
func (s *session) identify() {
	var addr netip.Addr
	var port uint16
	if ap, err := netip.ParseAddrPort(s.conn.RemoteAddr().String()); err == nil {
		addr, port = ap.Addr().Unmap(), ap.Port()
	}
	s.client = maillog.Client{Addr: addr, Port: port, LogPort: s.set.portLogging}
	if s.set.peernameLookup {
		s.client.Name = lookupClientName(s.ctx, addr)
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

// lookupClientName is the client name as Postfix verifies it: the PTR name,
// kept only when that name resolves back to the address; "" (logged as
// "unknown") otherwise. Issue 6 replaces it with the resolver that also
// reports temporary failures (reject_unknown_client_hostname needs them).
func lookupClientName(ctx context.Context, a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, nameLookupTimeout)
	defer cancel()
	names, err := net.DefaultResolver.LookupAddr(ctx, a.String())
	if err != nil {
		return ""
	}
	for _, n := range names {
		n = strings.TrimSuffix(n, ".")
		if n == "" {
			continue
		}
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", n)
		if err != nil {
			continue
		}
		for _, b := range addrs {
			if b.Unmap() == a {
				return n
			}
		}
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
