// Package resolve is the address-class part of trivial-rewrite(8): it says
// which class a recipient domain belongs to (ADDRESS_CLASS_README), and so
// whether mail for it is delivered here (local, virtual alias, virtual
// mailbox), relayed to a configured destination (relay), or sent to the
// Internet (default). smtpd's reject_unauth_destination and the queue
// manager's choice of transport both start from this answer, so the rules
// live here once.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"moat/internal/config"
	"moat/internal/hostname"
	"moat/internal/maps"
	"moat/internal/matchlist"
)

// Class is an address class (ADDRESS_CLASS_README, "What are address
// classes good for?"). The constants are in trivial-rewrite's order of
// precedence: a domain is in the first class whose list matches it.
type Class int

const (
	// Local: mydestination, this host's inet_interfaces/proxy_interfaces
	// as an address literal, or no domain at all.
	Local Class = iota
	// VirtualAlias: virtual_alias_domains; every address must be aliased
	// away by virtual_alias_maps, the rest is "User unknown".
	VirtualAlias
	// VirtualMailbox: virtual_mailbox_domains, delivered by the virtual
	// transport.
	VirtualMailbox
	// RelayDomain: relay_domains, which this host accepts mail for and
	// forwards (a backup MX or a gateway).
	RelayDomain
	// Default: everything else, which only authorized clients may send to.
	Default
)

// String names the class as ADDRESS_CLASS_README's headings do.
func (c Class) String() string {
	switch c {
	case Local:
		return "local"
	case VirtualAlias:
		return "virtual alias"
	case VirtualMailbox:
		return "virtual mailbox"
	case RelayDomain:
		return "relay"
	case Default:
		return "default"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Final reports whether mail for the class is delivered on this host
// (Postfix's RESOLVE_CLASS_FINAL): reject_unauth_destination lets these and
// RelayDomain through from anyone.
func (c Class) Final() bool { return c == Local || c == VirtualAlias || c == VirtualMailbox }

// Resolver classifies recipient domains for one configuration. It is safe
// for concurrent use.
type Resolver struct {
	mydest, valias, vmailbox, relay *matchlist.List
	own                             map[netip.Addr]bool
	numeric, helpful                bool
	warn                            func(string)
}

// Result is a classification with what trivial-rewrite would report
// beside it.
type Result struct {
	Class Class
	// Domain is the domain as classified: one trailing dot removed, and a
	// bare numeric address put in brackets when resolve_numeric_domain
	// allows it.
	Domain string
	// Invalid is Postfix's RESOLVE_FLAG_ERROR: the domain is neither a
	// valid host name nor a valid address literal. Its class is Default.
	Invalid bool
	// Warnings are Postfix's helpful_warnings for a domain listed in two
	// classes ("do not list domain example.com in BOTH mydestination and
	// virtual_alias_domains"); the class is still the first one.
	Warnings []string
}

// lookupTimeout bounds the resolution of a host name in inet_interfaces or
// proxy_interfaces at start-up.
const lookupTimeout = 10 * time.Second

// New reads mydestination, virtual_alias_domains, virtual_mailbox_domains,
// relay_domains, inet_interfaces, proxy_interfaces, inet_protocols,
// resolve_numeric_domain and helpful_warnings from cfg and opens their
// tables with opts. opts.Warn receives the "in BOTH" warnings of Domain
// (standard error when nil, as for table warnings).
func New(cfg *config.Config, opts maps.Options) (*Resolver, error) {
	r := &Resolver{warn: opts.Warn}
	var err error
	if r.numeric, err = cfg.Bool("resolve_numeric_domain"); err != nil {
		return nil, fmt.Errorf("resolve_numeric_domain: %w", err)
	}
	if r.helpful, err = cfg.Bool("helpful_warnings"); err != nil {
		return nil, fmt.Errorf("helpful_warnings: %w", err)
	}
	lists := []struct {
		dst   **matchlist.List
		param string
		kind  matchlist.Kind
	}{
		// trivial-rewrite matches these three as string lists (exact,
		// no parent domains); relay_domains is a domain list.
		{&r.mydest, "mydestination", matchlist.String},
		{&r.valias, "virtual_alias_domains", matchlist.String},
		{&r.vmailbox, "virtual_mailbox_domains", matchlist.String},
		{&r.relay, "relay_domains", matchlist.Domain},
	}
	for _, l := range lists {
		if *l.dst, err = matchlist.New(cfg, l.param, l.kind, opts); err != nil {
			r.Close()
			return nil, err
		}
	}
	if r.own, err = ownAddrs(cfg); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close releases the lists' tables.
func (r *Resolver) Close() error {
	var errs []error
	for _, l := range []*matchlist.List{r.mydest, r.valias, r.vmailbox, r.relay} {
		if l != nil {
			errs = append(errs, l.Close())
		}
	}
	return errors.Join(errs...)
}

// Domain returns the class of a recipient's domain ("" for a bare user,
// which is local). A non-nil error is a table lookup failure: the caller
// defers (Postfix's RESOLVE_FLAG_FAIL, 451 4.3.0). An invalid domain is
// Default; Resolve tells it apart. Warnings go to the Warn function given
// to New.
func (r *Resolver) Domain(domain string) (Class, error) {
	res, err := r.Resolve(domain)
	for _, w := range res.Warnings {
		if r.warn != nil {
			r.warn(w)
		} else {
			fmt.Fprintf(os.Stderr, "warning: %s\n", w)
		}
	}
	return res.Class, err
}

// Resolve classifies domain the way trivial-rewrite's resolve_addr() does
// after the local part has been taken off: strip one trailing dot, test
// for a local destination, check the syntax, then virtual alias, virtual
// mailbox and relay domains in that order.
func (r *Resolver) Resolve(domain string) (Result, error) {
	if domain == "" {
		return Result{Class: Local}, nil
	}
	d := domain
	if n := len(d); n > 1 && d[n-1] == '.' && d[n-2] != '.' {
		d = d[:n-1]
	}
	local, err := r.isLocal(d)
	if err != nil {
		return Result{Class: Default, Domain: d}, err
	}
	if local {
		res := Result{Class: Local, Domain: d}
		return res, r.nag(&res, "mydestination", r.valias, r.vmailbox)
	}
	switch {
	case strings.HasPrefix(d, "["):
		if hostname.CheckMailLiteral(d) != nil {
			return Result{Class: Default, Domain: d, Invalid: true}, nil
		}
	case !hostname.Valid(d):
		if !r.numeric || !hostname.ValidAddr(d) {
			return Result{Class: Default, Domain: d, Invalid: true}, nil
		}
		// resolve_numeric_domain: user@1.2.3.4 is user@[1.2.3.4], and
		// was already found not to be one of ours.
		d = "[" + d + "]"
	}
	res := Result{Domain: d}
	for _, c := range []struct {
		class Class
		list  *matchlist.List
		later []*matchlist.List
	}{
		{VirtualAlias, r.valias, []*matchlist.List{r.vmailbox, r.relay}},
		{VirtualMailbox, r.vmailbox, []*matchlist.List{r.relay}},
		{RelayDomain, r.relay, nil},
	} {
		ok, err := c.list.MatchDomain(d)
		if err != nil {
			return Result{Class: Default, Domain: d}, fmt.Errorf("%s lookup failure: %w", c.list.Origin(), err)
		}
		if ok {
			res.Class = c.class
			return res, r.nag(&res, c.list.Origin(), c.later...)
		}
	}
	res.Class = Default
	return res, nil
}

// IsLocal is Postfix's resolve_local(): whether domain is in mydestination
// or is an address literal of one of this host's interfaces. mail_addr_find
// (canonical(5), virtual(5) "TABLE SEARCH ORDER") looks up a bare local part
// only for such domains. One trailing dot is ignored, as in Resolve. A
// non-nil error is a table lookup failure.
func (r *Resolver) IsLocal(domain string) (bool, error) {
	d := domain
	if n := len(d); n > 1 && d[n-1] == '.' && d[n-2] != '.' {
		d = d[:n-1]
	}
	return r.isLocal(d)
}

// isLocal is Postfix's resolve_local(): mydestination, or an address
// literal (or, with resolve_numeric_domain, a bare address) of one of this
// host's interfaces or proxy interfaces.
func (r *Resolver) isLocal(d string) (bool, error) {
	if d == "" || strings.HasSuffix(d, ".") {
		return false, nil
	}
	ok, err := r.mydest.MatchDomain(d)
	if err != nil {
		return false, fmt.Errorf("mydestination lookup failure: %w", err)
	}
	if ok {
		return true, nil
	}
	var bare string
	if inner, found := strings.CutPrefix(d, "["); found && strings.HasSuffix(inner, "]") {
		a, err := hostname.CheckMailAddr(inner[:len(inner)-1])
		if err != nil {
			return false, nil
		}
		bare = a
	} else if r.numeric && hostname.ValidAddr(d) {
		bare = d
	} else {
		return false, nil
	}
	a, err := netip.ParseAddr(bare)
	if err != nil {
		return false, nil
	}
	return r.own[a.Unmap()], nil
}

// IsOwnAddr reports whether addr is one of inet_interfaces or
// proxy_interfaces (Postfix's own_inet_addr() and proxy_inet_addr()), the
// test behind a local address literal and permit_mx_backup.
func (r *Resolver) IsOwnAddr(addr netip.Addr) bool {
	return r.own[addr.Unmap().WithZone("")]
}

// nag adds the helpful_warnings for a domain that a later class's list also
// matches. A failing lookup here is an error like any other: trivial-rewrite
// would have failed on it too had the order been different.
func (r *Resolver) nag(res *Result, first string, later ...*matchlist.List) error {
	if !r.helpful {
		return nil
	}
	for _, l := range later {
		ok, err := l.MatchDomain(res.Domain)
		if err != nil {
			return fmt.Errorf("%s lookup failure: %w", l.Origin(), err)
		}
		if ok {
			res.Warnings = append(res.Warnings, fmt.Sprintf("do not list domain %s in BOTH %s and %s", res.Domain, first, l.Origin()))
		}
	}
	return nil
}

// ownAddrs collects the addresses of inet_interfaces and proxy_interfaces
// (postconf(5)): "all" is every interface address of the machine,
// "loopback-only" is 127.0.0.1 and ::1, and anything else a list of
// addresses or host names, resolved now. inet_protocols filters families.
func ownAddrs(cfg *config.Config) (map[netip.Addr]bool, error) {
	protos, err := cfg.List("inet_protocols")
	if err != nil {
		return nil, fmt.Errorf("inet_protocols: %w", err)
	}
	v4 := slices.Contains(protos, "all") || slices.Contains(protos, "ipv4")
	v6 := slices.Contains(protos, "all") || slices.Contains(protos, "ipv6")
	own := map[netip.Addr]bool{}
	add := func(a netip.Addr) {
		a = a.Unmap().WithZone("")
		if (a.Is4() && v4) || (a.Is6() && v6) {
			own[a] = true
		}
	}
	for _, param := range []string{"inet_interfaces", "proxy_interfaces"} {
		items, err := cfg.List(param)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", param, err)
		}
		for _, item := range items {
			switch strings.ToLower(item) {
			case "all":
				if param != "inet_interfaces" {
					return nil, fmt.Errorf("%s: \"all\" is not allowed here", param)
				}
				addrs, err := net.InterfaceAddrs()
				if err != nil {
					return nil, fmt.Errorf("%s: listing interface addresses: %w", param, err)
				}
				for _, ia := range addrs {
					if n, ok := ia.(*net.IPNet); ok {
						if a, ok := netip.AddrFromSlice(n.IP); ok {
							add(a)
						}
					}
				}
				continue
			case "loopback-only":
				add(netip.MustParseAddr("127.0.0.1"))
				add(netip.IPv6Loopback())
				continue
			}
			host := strings.TrimSuffix(strings.TrimPrefix(item, "["), "]")
			if a, err := netip.ParseAddr(host); err == nil {
				add(a)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
			addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("%s: host not found: %s: %w", param, item, err)
			}
			for _, a := range addrs {
				add(a)
			}
		}
	}
	return own, nil
}
