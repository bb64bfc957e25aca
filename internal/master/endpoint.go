package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// endpoint is one socket address an inet service listens on. Key is what
// reload compares to decide whether a listener stays open: the configured
// address, not the bound one, so "127.0.0.1:0" (a test's "any free port")
// keeps its socket across reloads like "127.0.0.1:25" does.
type endpoint struct {
	Network string // "tcp4" or "tcp6"
	Addr    string // host:port passed to net.Listen
}

// Key identifies the endpoint across configuration generations.
func (e endpoint) Key() string { return e.Network + " " + e.Addr }

// protocols is inet_protocols resolved (postconf(5): "all", "ipv4",
// "ipv6" or a list of the latter two).
type protocols struct {
	v4, v6 bool
	// warnings are logged once the logger exists: inet_proto.c's words
	// when the kernel has no IPv6.
	warnings []string
}

// probeIPv6 turns IPv6 off, with Postfix's warnings, when "all" asked for
// it but the kernel cannot make an IPv6 socket (a container or host with
// IPv6 disabled), as Postfix's inet_proto_init does; the master would
// otherwise fail to bind [::]:25.
func probeIPv6(p protocols) protocols {
	if !p.v6 || !p.v4 {
		return p
	}
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.Close(fd)
		return p
	}
	p.v6 = false
	p.warnings = append(p.warnings,
		fmt.Sprintf("inet_protocols: IPv6 support is disabled: %v", err),
		"inet_protocols: configuring for IPv4 support only")
	return p
}

// parseProtocols reads inet_protocols words. An empty list is refused:
// Postfix would run with no inet listener at all, which is never what an
// admin meant.
func parseProtocols(words []string) (protocols, error) {
	var p protocols
	for _, w := range words {
		switch strings.ToLower(w) {
		case "all":
			p.v4, p.v6 = true, true
		case "ipv4":
			p.v4 = true
		case "ipv6":
			p.v6 = true
		default:
			return p, fmt.Errorf("inet_protocols: unknown protocol %q (use all, ipv4 or ipv6)", w)
		}
	}
	if !p.v4 && !p.v6 {
		return p, errors.New("inet_protocols: no protocol enabled (use all, ipv4 or ipv6)")
	}
	return p, nil
}

// splitServiceName splits a master.cf inet service name (master(5),
// "Service name"): "host:port", "[v6addr]:port", or a bare "port". The
// port may be a number or an /etc/services name ("smtp", "submission").
// A bare name with no colon is a port, as in Postfix's host_port(3).
func splitServiceName(name string) (host, port string, err error) {
	if name == "" {
		return "", "", errors.New("empty service name")
	}
	if strings.HasPrefix(name, "[") {
		end := strings.Index(name, "]")
		if end < 0 {
			return "", "", fmt.Errorf("missing \"]\" in %q", name)
		}
		host = name[1:end]
		rest := name[end+1:]
		if !strings.HasPrefix(rest, ":") || len(rest) == 1 {
			return "", "", fmt.Errorf("missing port after \"]\" in %q", name)
		}
		port = rest[1:]
		if host == "" {
			return "", "", fmt.Errorf("empty host in %q", name)
		}
	} else if i := strings.LastIndex(name, ":"); i >= 0 {
		host, port = name[:i], name[i+1:]
		if strings.Contains(host, ":") {
			return "", "", fmt.Errorf("IPv6 address must be in brackets in %q", name)
		}
		if strings.ContainsAny(host, "[]") {
			return "", "", fmt.Errorf("misplaced bracket in %q", name)
		}
		if port == "" {
			return "", "", fmt.Errorf("missing port in %q", name)
		}
	} else {
		port = name
	}
	if !validPortWord(port) {
		return "", "", fmt.Errorf("bad port %q in %q", port, name)
	}
	return host, port, nil
}

// validPortWord admits what /etc/services names and numbers look like;
// anything else (spaces, slashes, NULs) cannot be a port and is refused
// before it reaches a lookup.
func validPortWord(p string) bool {
	if p == "" || len(p) > 64 {
		return false
	}
	for _, c := range p {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '+':
		default:
			return false
		}
	}
	return true
}

// lookupPort turns a port word into a number: a decimal port, or a tcp
// name from /etc/services (Go's resolver reads the file itself, without
// cgo).
func lookupPort(p string) (int, error) {
	if n, err := strconv.Atoi(p); err == nil {
		if n < 0 || n > 65535 {
			return 0, fmt.Errorf("port %d out of range", n)
		}
		return n, nil
	}
	n, err := net.LookupPort("tcp", p)
	if err != nil {
		return 0, fmt.Errorf("unknown service name %q (not in /etc/services)", p)
	}
	return n, nil
}

// resolver finds a host's addresses; tests and the fuzzer replace it so
// nothing leaves the machine.
type resolver func(ctx context.Context, host string) ([]netip.Addr, error)

func defaultResolver(ctx context.Context, host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// interfaces is inet_interfaces resolved once at start: Postfix's master
// reads it only at start ("to change inet_interfaces, stop and start
// Postfix"), and so does moat's.
type interfaces struct {
	Raw   string
	Addrs []netip.Addr // nil with All
	All   bool         // "all": the wildcard address of each protocol
}

// resolveInterfaces reads inet_interfaces (postconf(5)): "all",
// "loopback-only" (127.0.0.1 and ::1, per inet_protocols), or a list of
// addresses and host names.
func resolveInterfaces(ctx context.Context, words []string, p protocols, lookup resolver) (interfaces, error) {
	ifs := interfaces{Raw: strings.Join(words, " ")}
	var addrs []netip.Addr
	for _, w := range words {
		switch strings.ToLower(w) {
		case "all":
			ifs.All = true
			continue
		case "loopback-only":
			if p.v4 {
				addrs = append(addrs, netip.MustParseAddr("127.0.0.1"))
			}
			if p.v6 {
				addrs = append(addrs, netip.IPv6Loopback())
			}
			continue
		}
		got, err := hostAddrs(ctx, w, p, lookup)
		if err != nil {
			return ifs, fmt.Errorf("inet_interfaces: %w", err)
		}
		addrs = append(addrs, got...)
	}
	if ifs.All {
		return interfaces{Raw: ifs.Raw, All: true}, nil
	}
	if len(addrs) == 0 {
		return ifs, errors.New("inet_interfaces: no local interface address")
	}
	ifs.Addrs = uniqAddrs(addrs)
	return ifs, nil
}

// hostAddrs resolves one host word (an address literal, optionally in
// brackets, or a name) to the addresses inet_protocols enables.
func hostAddrs(ctx context.Context, host string, p protocols, lookup resolver) ([]netip.Addr, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	var all []netip.Addr
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return nil, fmt.Errorf("%s: scoped addresses are not supported", host)
		}
		all = []netip.Addr{a.Unmap()}
	} else {
		got, err := lookup(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("bad hostname or network address: %s: %v", host, err)
		}
		for _, a := range got {
			all = append(all, a.Unmap())
		}
	}
	var out []netip.Addr
	for _, a := range all {
		if (a.Is4() && p.v4) || (a.Is6() && p.v6) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no valid IP address found: %s (inet_protocols excludes it)", host)
	}
	return out, nil
}

func uniqAddrs(in []netip.Addr) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, a := range in {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// endpoints resolves an inet service name to the sockets it listens on,
// and returns Postfix's internal name for it, which master(8)'s process
// limit warning shows: "[addr]:port" with a host, else the numeric port.
func endpoints(ctx context.Context, name string, ifs interfaces, p protocols, lookup resolver) ([]endpoint, string, error) {
	host, portWord, err := splitServiceName(name)
	if err != nil {
		return nil, "", err
	}
	port, err := lookupPort(portWord)
	if err != nil {
		return nil, "", err
	}
	ps := strconv.Itoa(port)
	var addrs []netip.Addr
	internal := ps
	switch {
	case host != "":
		addrs, err = hostAddrs(ctx, host, p, lookup)
		if err != nil {
			return nil, "", err
		}
		internal = "[" + addrs[0].String() + "]:" + ps
	case ifs.All:
		var eps []endpoint
		if p.v4 {
			eps = append(eps, endpoint{"tcp4", net.JoinHostPort("0.0.0.0", ps)})
		}
		if p.v6 {
			eps = append(eps, endpoint{"tcp6", net.JoinHostPort("::", ps)})
		}
		return eps, internal, nil
	default:
		addrs = ifs.Addrs
	}
	var eps []endpoint
	for _, a := range addrs {
		nw := "tcp4"
		if a.Is6() {
			nw = "tcp6"
		}
		eps = append(eps, endpoint{nw, net.JoinHostPort(a.String(), ps)})
	}
	return eps, internal, nil
}
