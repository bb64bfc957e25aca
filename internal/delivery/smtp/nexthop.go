package smtp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"moat/internal/delivery/smtpclient"
)

// Destination is one parsed SMTP next hop (smtp(8) "SMTP DESTINATION
// SYNTAX"): a domain whose MX hosts are looked up, or, in brackets, a
// host or address used as it is.
type Destination struct {
	// Host is the domain, host name or address, without brackets.
	Host string
	// Port is the TCP port.
	Port int
	// NoMX is true for "[host]" and "[addr]": no MX lookup.
	NoMX bool
	// Addr is set when Host is an address literal.
	Addr netip.Addr
}

// ErrDestination reports a next hop smtp(8) cannot use; Postfix stops
// with a fatal error on one, moat defers the mail instead, so a typo in
// transport_maps delays mail rather than losing a service.
var ErrDestination = errors.New("bad SMTP destination")

// ParseDestinations reads a next hop as Postfix's smtp(8) does: one or
// more destinations separated by comma or whitespace (Postfix 3.5 and
// later), each
//
//	domain, domain:port      MX lookup, then A/AAAA if there is no MX
//	[host], [host]:port      A/AAAA lookup only
//	[addr], [addr]:port      that address ("[ipv6:2001:db8::1]" too)
//
// The port is a number or a service name; defPort ($smtp_tcp_port)
// applies when none is given.
func ParseDestinations(s string, defPort int) ([]Destination, error) {
	var out []Destination
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n' }) {
		d, err := parseDestination(f, defPort)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrDestination)
	}
	return out, nil
}

func parseDestination(s string, defPort int) (Destination, error) {
	if len(s) >= 5 && strings.EqualFold(s[:5], "inet:") {
		s = s[5:]
	}
	bracket := strings.HasPrefix(s, "[")
	host, port, err := smtpclient.HostPort(s, defPort)
	if err != nil {
		return Destination{}, fmt.Errorf("%w: %q: %v", ErrDestination, s, err)
	}
	d := Destination{Host: host, Port: port, NoMX: bracket}
	lit := host
	if len(lit) > 5 && strings.EqualFold(lit[:5], "ipv6:") {
		lit = lit[5:]
	}
	if a, err := netip.ParseAddr(lit); err == nil && a.Zone() == "" {
		d.Addr, d.Host, d.NoMX = a.Unmap(), a.Unmap().String(), true
	} else if strings.Contains(host, ":") {
		// Not an address, and no host name has a colon.
		return Destination{}, fmt.Errorf("%w: %q: bad host %q", ErrDestination, s, host)
	}
	return d, nil
}

// String renders the destination back in its syntax.
func (d Destination) String() string {
	h := d.Host
	if d.NoMX {
		h = "[" + h + "]"
	}
	out := fmt.Sprintf("%s:%d", h, d.Port)
	if len(out) >= 5 && strings.EqualFold(out[:5], "inet:") {
		// A host named "inet" would read as the prefix.
		out = "inet:" + out
	}
	return out
}
