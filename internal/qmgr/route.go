package qmgr

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/queue"
	"moat/internal/resolve"
)

// router chooses a recipient's transport and next hop as trivial-rewrite(8)
// does for the queue manager: the message's content filter, then
// transport_maps (transport(5)), then the default transport of the
// recipient domain's address class (ADDRESS_CLASS_README).
type router struct {
	classify   func(domain string) (resolve.Class, error)
	tables     []maps.Table // transport_maps, in order
	parentDots bool         // transport_maps not in parent_domain_matches_subdomains: ".domain" keys
	delimiters string

	localTransport, virtualTransport, relayTransport, defaultTransport string
	// relayhost is the next hop of the relay and default classes when
	// their transport setting names none (postconf(5) relayhost).
	relayhost string
}

func newRouter(cfg *config.Config, opts maps.Options, classify func(string) (resolve.Class, error)) (*router, error) {
	r := &router{
		classify:         classify,
		delimiters:       cfg.Get("recipient_delimiter"),
		localTransport:   cfg.Get("local_transport"),
		virtualTransport: cfg.Get("virtual_transport"),
		relayTransport:   cfg.Get("relay_transport"),
		defaultTransport: cfg.Get("default_transport"),
		relayhost:        strings.TrimSpace(cfg.Get("relayhost")),
	}
	for name, v := range map[string]string{"local_transport": r.localTransport,
		"default_transport": r.defaultTransport, "virtual_transport": r.virtualTransport,
		"relay_transport": r.relayTransport} {
		if strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("qmgr: %s: empty", name)
		}
	}
	parents, err := cfg.List("parent_domain_matches_subdomains")
	if err != nil {
		return nil, fmt.Errorf("qmgr: parent_domain_matches_subdomains: %w", err)
	}
	r.parentDots = !slices.Contains(parents, "transport_maps")
	specs, err := cfg.List("transport_maps")
	if err != nil {
		return nil, fmt.Errorf("qmgr: transport_maps: %w", err)
	}
	for _, spec := range specs {
		t, err := maps.Open(spec, opts)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("qmgr: transport_maps: %w", err)
		}
		r.tables = append(r.tables, t)
	}
	return r, nil
}

func (r *router) close() error {
	var errs []error
	for _, t := range r.tables {
		errs = append(errs, t.Close())
	}
	r.tables = nil
	return errors.Join(errs...)
}

// route returns recipient addr's route; an error is a lookup failure,
// which defers the recipient.
func (r *router) route(env *queue.Envelope, addr string) (route, error) {
	_, domain := splitAddress(addr)
	if env.Filter != "" {
		// postconf(5) content_filter: every recipient goes to the filter,
		// which re-injects the message into a service without one.
		return parseTransport(env.Filter, domain), nil
	}
	class, err := r.classify(domain)
	if err != nil {
		return route{}, fmt.Errorf("address resolver failure: %w", err)
	}
	var setting string
	switch class {
	case resolve.Local:
		setting = r.localTransport
	case resolve.VirtualAlias:
		// Mail the queue received for a virtual alias domain was
		// rewritten by virtual_alias_maps; what is left is unknown, and
		// trivial-rewrite sends it to error(8).
		return route{transport: "error", nexthop: "5.1.1 User unknown in virtual alias table"}, nil
	case resolve.VirtualMailbox:
		setting = r.virtualTransport
	case resolve.RelayDomain:
		setting = r.relayTransport
	default:
		setting = r.defaultTransport
	}
	def := parseTransport(setting, domain)
	if _, nh, _ := strings.Cut(setting, ":"); r.relayhost != "" && strings.TrimSpace(nh) == "" &&
		(class == resolve.RelayDomain || class == resolve.Default) {
		// trivial-rewrite's resolve.c: relayhost replaces the recipient
		// domain as the next hop of non-local mail unless the class's
		// transport names one; transport_maps still overrules both.
		def.nexthop = r.relayhost
	}
	if len(r.tables) == 0 {
		return def, nil
	}
	found, value, err := r.lookup(addr, domain)
	if err != nil {
		return route{}, fmt.Errorf("transport_maps lookup failure: %w", err)
	}
	if !found {
		return def, nil
	}
	return mergeTransport(value, def, domain), nil
}

// lookup searches transport_maps with transport(5)'s keys: the address
// (with, then without its extension), the domain, its parent domains
// (".parent" unless parent_domain_matches_subdomains lists transport_maps,
// then "parent"), and finally "*". Pattern tables see the address alone.
func (r *router) lookup(addr, domain string) (bool, string, error) {
	addr = strings.ToLower(addr)
	domain = strings.ToLower(domain)
	keys := []string{addr}
	if r.delimiters != "" {
		local, dom := splitAddress(addr)
		if i := strings.IndexAny(local, r.delimiters); i > 0 {
			plain := local[:i]
			if dom != "" {
				plain += "@" + dom
			}
			keys = append(keys, plain)
		}
	}
	var domainKeys []string
	if domain != "" {
		domainKeys = append(domainKeys, domain)
		for d := domain; ; {
			i := strings.IndexByte(d, '.')
			if i < 0 {
				break
			}
			d = d[i+1:]
			if d == "" {
				break
			}
			if r.parentDots {
				domainKeys = append(domainKeys, "."+d)
			} else {
				domainKeys = append(domainKeys, d)
			}
		}
	}
	for _, t := range r.tables {
		try := keys[:1]
		if !t.Pattern() {
			try = append(append(append([]string{}, keys...), domainKeys...), "*")
		}
		for _, k := range try {
			v, ok, err := t.Lookup(k)
			if err != nil {
				return false, "", err
			}
			if ok {
				return true, v, nil
			}
		}
	}
	return false, "", nil
}

// mergeTransport applies a transport(5) result ("RESULT FORMAT") to the
// class default: a null transport keeps the default transport and a null
// next hop with it keeps the default next hop (":" changes nothing); a
// transport without a next hop resets the next hop to the recipient
// domain.
func mergeTransport(value string, def route, domain string) route {
	value = strings.TrimSpace(value)
	name, nexthop, _ := strings.Cut(value, ":")
	out := def
	if name != "" {
		out.transport = name
		out.nexthop = domain
	}
	if nexthop != "" {
		out.nexthop = nexthop
	}
	return out
}
