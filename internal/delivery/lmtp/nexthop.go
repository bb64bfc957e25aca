package lmtp

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"moat/internal/delivery/smtpclient"
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
	host, port, err := smtpclient.HostPort(s, defPort)
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

// String renders the destination back in transport(5) form.
func (n Nexthop) String() string {
	if n.Unix {
		return "unix:" + n.Path
	}
	return "inet:" + net.JoinHostPort(n.Host, strconv.Itoa(n.Port))
}
