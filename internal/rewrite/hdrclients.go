package rewrite

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/matchlist"
	"moat/internal/resolve"
)

// headerClients is local_header_rewrite_clients (postconf(5)), evaluated
// as Postfix's smtpd_check_rewrite() does: the first item that permits
// makes the client local; none does, remote.
type headerClients struct {
	items      []clientItem
	mynetworks *matchlist.List
	res        *resolve.Resolver
	// warnings for items Postfix warns about and skips ("parameter
	// local_header_rewrite_clients: invalid request: ..."), logged by the
	// caller once per decision as Postfix does.
	invalid []string
}

type clientItem struct {
	name  string     // permit_inet_interfaces, permit_mynetworks, ...
	table maps.Table // for check_address_map
	spec  string
}

func openHeaderClients(cfg *config.Config, opts maps.Options, res *resolve.Resolver) (*headerClients, error) {
	list, err := cfg.List("local_header_rewrite_clients")
	if err != nil {
		return nil, fmt.Errorf("local_header_rewrite_clients: %w", err)
	}
	h := &headerClients{res: res}
	for i := 0; i < len(list); i++ {
		name := strings.ToLower(list[i])
		spec := ""
		switch {
		case strings.Contains(list[i], ":"):
			// A bare type:table is check_address_map type:table.
			name, spec = "check_address_map", list[i]
		case name == "check_address_map":
			if i+1 >= len(list) {
				h.close()
				return nil, errors.New("local_header_rewrite_clients: check_address_map needs a table")
			}
			i++
			spec = list[i]
		}
		it := clientItem{name: name, spec: spec}
		switch name {
		case "check_address_map":
			if it.table, err = maps.Open(spec, opts); err != nil {
				h.close()
				return nil, fmt.Errorf("local_header_rewrite_clients: %w", err)
			}
		case "permit_mynetworks":
			if h.mynetworks == nil {
				if h.mynetworks, err = matchlist.New(cfg, "mynetworks", matchlist.Addr, opts); err != nil {
					h.close()
					return nil, fmt.Errorf("local_header_rewrite_clients: %w", err)
				}
			}
		case "permit_inet_interfaces", "permit_sasl_authenticated",
			"permit_tls_clientcerts", "permit_tls_all_clientcerts":
		default:
			h.invalid = append(h.invalid, list[i])
			continue
		}
		h.items = append(h.items, it)
	}
	return h, nil
}

func (h *headerClients) close() error {
	if h == nil {
		return nil
	}
	var errs []error
	for _, it := range h.items {
		if it.table != nil {
			errs = append(errs, it.table.Close())
		}
	}
	if h.mynetworks != nil {
		errs = append(errs, h.mynetworks.Close())
	}
	return errors.Join(errs...)
}

// Client is what local_header_rewrite_clients asks about an SMTP client.
type Client struct {
	Addr netip.Addr
	// SASLAuthenticated: the session authenticated (permit_sasl_authenticated).
	SASLAuthenticated bool
	// TLSCertTrusted, TLSCertVerified: the client certificate was
	// listed in relay_clientcerts (permit_tls_clientcerts) or verified
	// at all (permit_tls_all_clientcerts).
	TLSCertTrusted, TLSCertVerified bool
}

// HeaderContextFor decides the header rewriting context of an SMTP client
// (postconf(5) local_header_rewrite_clients): local when an item permits —
// permit_inet_interfaces (the client address is one of inet_interfaces or
// proxy_interfaces), permit_mynetworks, permit_sasl_authenticated,
// permit_tls_clientcerts, permit_tls_all_clientcerts, or
// check_address_map type:table (also a bare type:table), where any value
// for the client address permits — and remote otherwise. warnings are
// the items Postfix skips with "invalid request"; a table lookup failure
// is an error, which Postfix answers with "451 4.3.0 Temporary lookup
// error".
func (r *Rewriter) HeaderContextFor(c Client) (ctx HeaderContext, warnings []string, err error) {
	h := r.clients
	if h == nil {
		return HeaderRemote, nil, nil
	}
	for _, name := range h.invalid {
		warnings = append(warnings, "parameter local_header_rewrite_clients: invalid request: "+name)
	}
	addr := c.Addr.Unmap()
	for _, it := range h.items {
		ok := false
		switch it.name {
		case "permit_inet_interfaces":
			ok = addr.IsValid() && h.res != nil && h.res.IsOwnAddr(addr)
		case "permit_mynetworks":
			if addr.IsValid() {
				if ok, err = h.mynetworks.Match("", addr); err != nil {
					return HeaderRemote, warnings, fmt.Errorf("local_header_rewrite_clients: mynetworks: %w", err)
				}
			}
		case "permit_sasl_authenticated":
			ok = c.SASLAuthenticated
		case "permit_tls_clientcerts":
			ok = c.TLSCertTrusted
		case "permit_tls_all_clientcerts":
			ok = c.TLSCertVerified
		case "check_address_map":
			if addr.IsValid() {
				if _, ok, err = it.table.Lookup(addr.String()); err != nil {
					return HeaderRemote, warnings, fmt.Errorf("local_header_rewrite_clients: %s: lookup error: %w", it.spec, err)
				}
			}
		}
		if ok {
			return HeaderLocal, warnings, nil
		}
	}
	return HeaderRemote, warnings, nil
}
