package lmtp

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// Nexthop is a parsed LMTP destination (lmtp(8) "SINGLE-RECIPIENT
// DELIVERY"/"transport:nexthop" in transport(5)): a UNIX-domain socket
// or a TCP host and port.
type Nexthop struct {
	// Unix is true for "unix:PATH".
	Unix bool
	// Path is the socket path as configured, which is what Postfix logs
	// in relay=HOSTNAME[PATH]; Dial is the path to connect to (a relative
	// Path resolved against queue_directory, where Postfix's lmtp(8) runs).
	Path, Dial string
	// Host and Port are the TCP destination: Host without brackets, Port
	// a number.
	Host string
	Port int
}

// ErrNexthop reports a destination lmtp cannot use; Postfix's lmtp(8)
// stops with a fatal error on one, moat defers the mail instead so a
// typo in transport_maps delays mail rather than losing a service.
var ErrNexthop = errors.New("bad LMTP destination")

// ParseNexthop reads the part after "lmtp:" in a transport(5) entry, as
// Postfix's smtp_connect() and host_port() do for LMTP:
//
//	unix:/path, unix:private/dovecot-lmtp   UNIX-domain socket
//	inet:host, inet:host:port, inet:[addr]:port
//	host, host:port, [host], [host]:port     TCP, as inet:
//
// The port is a number or a service name from /etc/services ("lmtp");
// defPort ($lmtp_tcp_port) applies when none is given. queueDir resolves
// a relative socket path.
func ParseNexthop(s string, defPort int, queueDir string) (Nexthop, error) {
	if rest, ok := cutPrefixFold(s, "unix:"); ok {
		if rest == "" || strings.ContainsAny(rest, "\x00\r\n") {
			return Nexthop{}, fmt.Errorf("%w: %q", ErrNexthop, s)
		}
		nh := Nexthop{Unix: true, Path: rest, Dial: rest}
		if !filepath.IsAbs(rest) {
			nh.Dial = filepath.Join(queueDir, rest)
		}
		return nh, nil
	}
	if rest, ok := cutPrefixFold(s, "inet:"); ok {
		s = rest
	}
	host, port, err := hostPort(s, defPort)
	if err != nil {
		return Nexthop{}, fmt.Errorf("%w: %q: %v", ErrNexthop, s, err)
	}
	return Nexthop{Host: host, Port: port}, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// hostPort splits "[host]:port", "[host]", "host:port" or "host". A bare
// IPv6 address (more than one colon, no brackets) is taken whole, as
// host_port() does.
func hostPort(s string, defPort int) (string, int, error) {
	var host, service string
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, errors.New("missing \"]\"")
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return "", 0, errors.New("garbage after \"]\"")
			}
			service = rest[1:]
			if service == "" {
				return "", 0, errors.New("empty port")
			}
		}
	case strings.Count(s, ":") == 1:
		host, service, _ = strings.Cut(s, ":")
		if service == "" {
			return "", 0, errors.New("empty port")
		}
	default:
		host = s
	}
	if host == "" {
		return "", 0, errors.New("empty host")
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("[]/\\@,;<>\"'", c) >= 0 {
			return "", 0, fmt.Errorf("bad host %q", host)
		}
	}
	port := defPort
	if service != "" {
		p, err := parsePort(service)
		if err != nil {
			return "", 0, err
		}
		port = p
	}
	return host, port, nil
}

// parsePort is smtp_parse_destination()'s rule: all digits and 1-65535, or
// a TCP service name.
func parsePort(s string) (int, error) {
	digits := true
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			digits = false
		}
	}
	if digits {
		n, err := strconv.Atoi(s)
		if err != nil || n == 0 || n > 65535 {
			return 0, fmt.Errorf("bad network port %q", s)
		}
		return n, nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return 0, fmt.Errorf("bad service %q", s)
		}
	}
	n, err := net.LookupPort("tcp", s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("unknown service: %s/tcp", s)
	}
	return n, nil
}

// String renders the destination back in transport(5) form.
func (n Nexthop) String() string {
	if n.Unix {
		return "unix:" + n.Path
	}
	return "inet:" + net.JoinHostPort(n.Host, strconv.Itoa(n.Port))
}
