// Package dns is moat's DNS resolver: the lookups Postfix's dns_lookup(3)
// library does for smtpd (client names, DNS white/black lists, MX/A/NS
// checks), with Postfix's result classes (DNS_OK, DNS_NOTFOUND, DNS_FAIL,
// DNS_RETRY, DNS_INVAL, DNS_NULLMX, DNS_POLICY), smtpd_dns_reply_filter,
// and a per-SMTP-session cache (smtpd_check.c keeps one for DNS lists).
//
// It talks the DNS protocol itself (github.com/miekg/dns) instead of using
// net.Resolver: restrictions must tell NXDOMAIN from NODATA from SERVFAIL
// (permanent versus temporary rejects), read TXT and NS records with their
// TTLs, and ask servers given by the dns_servers moat parameter.
package dns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"moat/internal/config"
	"moat/internal/maps"
)

// Type is a DNS resource record type (RFC 1035 section 3.2.2, RFC 3596).
type Type uint16

// The record types smtpd's restrictions look up.
const (
	A    Type = 1
	NS   Type = 2
	PTR  Type = 12
	MX   Type = 15
	TXT  Type = 16
	AAAA Type = 28
	// TLSA is RFC 6698's certificate association, which smtp(8) asks
	// for DANE (RFC 7672 section 2.2).
	TLSA Type = 52
)

// String is the type's mnemonic, as in a reply filter's "name TTL IN TYPE
// value" text and Postfix's "type=MX" error reasons.
func (t Type) String() string {
	if s, ok := mdns.TypeToString[uint16(t)]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", uint16(t))
}

// Status is a lookup's outcome in Postfix's dns_lookup(3) classes; the
// restrictions map them to replies (a Retry is a 450/451, never a silent
// permit or a permanent reject).
type Status int

// Postfix dns_lookup results (src/dns/dns.h).
const (
	// OK: records found (DNS_OK).
	OK Status = iota
	// NotFound: the name exists but has no record of the type (NODATA,
	// DNS_NOTFOUND).
	NotFound
	// Fail: NXDOMAIN, host not found (permanent, DNS_FAIL).
	Fail
	// Retry: timeout, SERVFAIL, REFUSED, network error (temporary,
	// DNS_RETRY).
	Retry
	// Invalid: the reply names a malformed host or domain (DNS_INVAL,
	// "Malformed or unexpected name server reply"). A malformed query
	// name is NotFound and an unparsable reply Retry, as in Postfix.
	Invalid
	// NullMX: RFC 7505 "MX 0 ." — the domain accepts no mail (DNS_NULLMX,
	// MX lookups only, reported before the reply filter runs).
	NullMX
	// Policy: smtpd_dns_reply_filter removed every record (DNS_POLICY).
	Policy
)

func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case NotFound:
		return "NotFound"
	case Fail:
		return "Fail"
	case Retry:
		return "Retry"
	case Invalid:
		return "Invalid"
	case NullMX:
		return "NullMX"
	case Policy:
		return "Policy"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// RR is one resource record of an answer, reduced to what restrictions use.
type RR struct {
	// Name is the owner name without the trailing dot.
	Name string
	Type Type
	TTL  uint32
	// Pref is an MX record's preference (0 otherwise).
	Pref uint16
	// Value is the address text (A, AAAA), the target host without the
	// trailing dot (MX, NS, PTR), a TXT record's first character-string
	// (what Postfix's restrictions see), or a TLSA record's certificate
	// association data in lower-case hex.
	Value string
	// Strings are a TXT record's character-strings as published, for
	// protocols that join them (RFC 8461 section 3.1: an MTA-STS record
	// split into several strings is one record).
	Strings []string
	// Usage, Selector and Matching are a TLSA record's first three
	// fields (RFC 6698 section 2.1); zero for other types.
	Usage, Selector, Matching uint8
}

// Result is a lookup's records or why there are none.
type Result struct {
	Status Status
	RRs    []RR
	// Reason says why in Postfix's short words (dns_strerror(3): "Host not
	// found", "Host not found, try again", "Host found but no data record
	// of requested type", or "DNS reply filter drops all results"), for
	// texts like "Unable to look up NS host for x: Host not found".
	Reason string
	// Why is dns_lookup(3)'s whole explanation, naming the query: "Host or
	// domain name not found. Name service error for name=x type=MX: Host
	// not found, try again", or "Error looking up name=x type=A: DNS reply
	// filter drops all results".
	Why string
	// Authentic says every reply the answer came from (each CNAME hop
	// included) had the AD bit set by the configured name server, with
	// Options.DNSSEC on: Postfix's dnssec_valid (smtp_dns_support_level
	// = dnssec), which trusts its resolver to validate as moat does
	// (RFC 6840 section 5.7; RFC 7672 section 2.1.1 needs it for DANE).
	// It covers negative answers too (authenticated denial).
	Authentic bool
}

// Options configure a Resolver.
type Options struct {
	// Servers are "host:port" (or "host", port 53) name servers to ask;
	// empty reads /etc/resolv.conf once, at New (before a daemon enters
	// its chroot jail).
	Servers []string
	// Timeout bounds each query attempt; a few attempts go over UDP, and a
	// truncated reply is asked again over TCP. Zero means 5 seconds.
	Timeout time.Duration
	// ReplyFilter is smtpd_dns_reply_filter (postconf(5)): each record's
	// text "name TTL IN TYPE value" is looked up, and a record whose
	// result is IGNORE is dropped. nil: no filter.
	ReplyFilter maps.Table
	// IPv4 and IPv6 say which address families HostAddrs asks for
	// (inet_protocols); neither means IPv4.
	IPv4, IPv6 bool
	// Warn receives problems Postfix logs as warnings (a reply filter
	// lookup error, an unknown filter action), without the "warning: "
	// prefix. nil discards them.
	Warn func(string)
	// HostsFile is a hosts(5) file that ClientName consults before DNS,
	// as getnameinfo(3) and getaddrinfo(3) do for Postfix's smtpd through
	// nsswitch.conf; it is read once, at New. Empty: DNS only.
	HostsFile string
	// Info receives what Postfix logs at info level: each record the
	// reply filter drops ("ignoring DNS RR: name. TTL IN A 1.2.3.4"). nil
	// discards them.
	Info func(string)
	// DNSSEC asks for DNSSEC-validated answers (smtp_dns_support_level
	// = dnssec): queries carry the EDNS0 DO bit and the AD bit, and
	// Result.Authentic reports the reply's AD bit. The servers must be
	// a validating resolver reached over a trusted path (the local host),
	// as Postfix requires of its resolver (postconf(5)
	// smtp_dns_support_level).
	DNSSEC bool
}

// Resolver asks name servers; it is safe for concurrent use, and keeps no
// cache itself (sessions do).
type Resolver struct {
	servers  []string
	timeout  time.Duration
	attempts int
	filter   maps.Table
	ipv4     bool
	ipv6     bool
	warn     func(string)
	info     func(string)
	hosts    *etcHosts
	dnssec   bool
}

// New makes a Resolver. Without Options.Servers it reads /etc/resolv.conf
// now, so a daemon can build its resolver before it enters its jail.
func New(o Options) (*Resolver, error) {
	r := &Resolver{
		timeout:  o.Timeout,
		attempts: 2,
		filter:   o.ReplyFilter,
		ipv4:     o.IPv4,
		ipv6:     o.IPv6,
		warn:     o.Warn,
		info:     o.Info,
		dnssec:   o.DNSSEC,
	}
	if r.info == nil {
		r.info = func(string) {}
	}
	if r.timeout <= 0 {
		r.timeout = 5 * time.Second
	}
	if r.warn == nil {
		r.warn = func(string) {}
	}
	if !r.ipv4 && !r.ipv6 {
		r.ipv4 = true
	}
	if o.HostsFile != "" {
		h, err := readHosts(o.HostsFile)
		if err != nil {
			return nil, fmt.Errorf("dns: %w", err)
		}
		r.hosts = h
	}
	for _, s := range o.Servers {
		hp, err := serverAddr(s)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, hp)
	}
	if len(r.servers) == 0 {
		cc, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
		if errors.Is(err, fs.ErrNotExist) {
			// resolv.conf(5): without the file, the name server on
			// the local machine is asked.
			cc, err = &mdns.ClientConfig{Port: "53", Attempts: 2, Timeout: 5}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("dns: reading /etc/resolv.conf: %w", err)
		}
		for _, s := range cc.Servers {
			r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
		}
		if cc.Attempts > 0 {
			r.attempts = cc.Attempts
		}
		if o.Timeout <= 0 && cc.Timeout > 0 {
			r.timeout = time.Duration(cc.Timeout) * time.Second
		}
		if len(r.servers) == 0 {
			// resolv(5): no nameserver line means the local one.
			r.servers = []string{"127.0.0.1:53"}
		}
	}
	return r, nil
}

// serverAddr accepts "host", "host:port", "[v6]:port" and a bare IPv6
// address, as dns_servers documents.
func serverAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("dns: empty server address")
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		if h == "" || p == "" {
			return "", fmt.Errorf("dns: bad server address %q", s)
		}
		return s, nil
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	return net.JoinHostPort(s, "53"), nil
}

// FromConfig builds the Resolver a daemon uses from dns_servers (moat's
// parameter), smtpd_dns_reply_filter and inet_protocols. mo opens the
// reply filter table (postconf(5) smtpd_dns_reply_filter).
func FromConfig(cfg *config.Config, mo maps.Options, warn func(string)) (*Resolver, error) {
	o, err := OptionsFromConfig(cfg, mo, warn)
	if err != nil {
		return nil, err
	}
	r, err := New(o)
	if err != nil && o.ReplyFilter != nil {
		o.ReplyFilter.Close()
	}
	return r, err
}

// OptionsFromConfig is FromConfig's Options, for a caller that also sets
// Info or Timeout before New. It opens the reply filter table, which the
// Resolver made from the Options closes.
func OptionsFromConfig(cfg *config.Config, mo maps.Options, warn func(string)) (Options, error) {
	servers, err := cfg.List("dns_servers")
	if err != nil {
		return Options{}, fmt.Errorf("dns_servers: %w", err)
	}
	o := Options{Servers: servers, Warn: warn}
	if len(servers) == 0 {
		// The system resolver configuration: hosts(5) before DNS for the
		// client name, as the C library does for Postfix. dns_servers
		// means those servers answer everything.
		o.HostsFile = "/etc/hosts"
	}
	protos, err := cfg.List("inet_protocols")
	if err != nil {
		return Options{}, fmt.Errorf("inet_protocols: %w", err)
	}
	for _, p := range protos {
		switch strings.ToLower(p) {
		case "all":
			o.IPv4, o.IPv6 = true, true
		case "ipv4":
			o.IPv4 = true
		case "ipv6":
			o.IPv6 = true
		}
	}
	f, err := cfg.GetErr("smtpd_dns_reply_filter")
	if err != nil {
		return Options{}, fmt.Errorf("smtpd_dns_reply_filter: %w", err)
	}
	if f = strings.TrimSpace(f); f != "" {
		t, err := maps.Open(f, mo)
		if err != nil {
			return Options{}, fmt.Errorf("smtpd_dns_reply_filter %s: %w", f, err)
		}
		o.ReplyFilter = t
	}
	return o, nil
}

// Close releases the reply filter table.
func (r *Resolver) Close() error {
	if r == nil || r.filter == nil {
		return nil
	}
	return r.filter.Close()
}

// Session is a per-SMTP-session view of the resolver with a cache, so one
// session's restrictions ask each question once (smtpd_check.c's DNSBL
// cache, extended to every lookup). Safe for one goroutine.
type Session struct {
	r     *Resolver
	cache map[cacheKey]Result
}

type cacheKey struct {
	name string
	t    Type
	raw  bool // without the reply filter (ClientName's lookups)
}

// Session starts a per-session cache.
func (r *Resolver) Session() *Session {
	return &Session{r: r, cache: make(map[cacheKey]Result)}
}

// Flush drops the cache, as smtpd_check's flush_dnsxl_cache test command
// does, so a test script can change smtpd_dns_reply_filter and ask again.
func (s *Session) Flush() {
	clear(s.cache)
}

// Lookup asks for name's records of type t, through the cache and, for
// the types Postfix's smtpd filters (A, AAAA, MX, TXT; postconf(5)
// smtp_dns_reply_filter), the reply filter.
func (s *Session) Lookup(ctx context.Context, name string, t Type) Result {
	return s.lookup(ctx, name, t, false)
}

// lookup is Lookup; raw skips the reply filter, for the client name,
// which Postfix finds through the C library where no filter applies.
func (s *Session) lookup(ctx context.Context, name string, t Type, raw bool) Result {
	key := cacheKey{strings.ToLower(strings.TrimSuffix(name, ".")), t, raw}
	if res, ok := s.cache[key]; ok {
		return res
	}
	res := s.r.lookup(ctx, key.name, t, !raw && filtered(t))
	if ctx.Err() == nil || res.Status != Retry {
		// A lookup cut short by the caller's deadline is not an answer
		// to remember.
		s.cache[key] = res
	}
	return res
}

// filtered reports whether smtpd_dns_reply_filter applies to type t.
func filtered(t Type) bool {
	switch t {
	case A, AAAA, MX, TXT:
		return true
	}
	return false
}
