package smtpclient

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// HostPort splits "[host]:port", "[host]", "host:port" or "host". A bare
// IPv6 address (more than one colon, no brackets) is taken whole, as
// host_port() does. Postfix's smtp(8) and lmtp(8) destinations share
// this syntax (smtp(8) "SMTP DESTINATION SYNTAX").
func HostPort(s string, defPort int) (string, int, error) {
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
		p, err := ParsePort(service)
		if err != nil {
			return "", 0, err
		}
		port = p
	}
	return host, port, nil
}

// ParsePort is smtp_parse_destination()'s rule: all digits and 1-65535, or
// a TCP service name.
func ParsePort(s string) (int, error) {
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
