package maps

import (
	"net/netip"
	"strings"
)

// AccessOptions are the main.cf parameters that shape access(5) lookups.
type AccessOptions struct {
	// ParentMatchesSubdomains is true when parent_domain_matches_subdomains
	// lists smtpd_access_maps (Postfix's default): the key "example.com"
	// then also matches sub.example.com. When false, parent domains are
	// looked up in the ".example.com" form instead (access(5)).
	ParentMatchesSubdomains bool
	// RecipientDelimiter is recipient_delimiter: any of its characters
	// separates user from extension in user+ext@domain.
	RecipientDelimiter string
	// NullKey is smtpd_null_access_lookup_key, the key looked up for the
	// null sender <> (default "<>").
	NullKey string
}

// DefaultAccessOptions are Postfix 3.7's defaults.
func DefaultAccessOptions() AccessOptions {
	return AccessOptions{ParentMatchesSubdomains: true, NullKey: "<>"}
}

// AccessResult is the outcome of an access(5) search: the first key that a
// table had, and its value. Callers interpret the value (OK, REJECT,
// DUNNO, ...); a DUNNO found at a specific key still ends the search, which
// is how access(5) lets "DUNNO" exempt a host from a broader rule.
type AccessResult struct {
	Key, Value string
	Found      bool
}

// search tries keys in order; a pattern table sees only the first (whole)
// key, a fixed table every key, per access(5).
func search(t Table, keys []string, whole int) (AccessResult, error) {
	if t.Pattern() {
		keys = keys[:whole]
	}
	for _, k := range keys {
		v, ok, err := t.Lookup(k)
		if err != nil {
			return AccessResult{}, err
		}
		if ok {
			return AccessResult{Key: k, Value: v, Found: true}, nil
		}
	}
	return AccessResult{}, nil
}

// LookupAddress searches t for an email address in access(5) order
// ("EMAIL ADDRESS PATTERNS" and "EMAIL ADDRESS EXTENSION"):
// user+ext@domain, user@domain, domain and its parents, user+ext@, user@.
// The null address looks up o.NullKey only.
func LookupAddress(t Table, addr string, o AccessOptions) (AccessResult, error) {
	return search(t, AddressKeys(addr, o), 1)
}

// LookupDomain searches t for a domain or host name (check_helo_access,
// the domain part of an address): the name, then its parent domains.
func LookupDomain(t Table, domain string, o AccessOptions) (AccessResult, error) {
	return search(t, DomainKeys(domain, o), 1)
}

// LookupClient searches t for an SMTP client (check_client_access): the
// host name and its parent domains, then the address and its shorter
// network prefixes ("HOST NAME/ADDRESS PATTERNS"). A pattern table is
// asked the whole name, then the whole address. Postfix's smtpd passes
// "unknown" as the name of a client without a verified name, and so looks
// that word up like a domain (a table may list it); name "" skips the name
// lookups altogether.
func LookupClient(t Table, name, addr string, o AccessOptions) (AccessResult, error) {
	if t.Pattern() {
		var keys []string
		if name != "" {
			keys = append(keys, foldASCII(name))
		}
		if a := AddrKeys(addr); len(a) > 0 {
			keys = append(keys, a[0])
		}
		return search(t, keys, len(keys))
	}
	keys := append(DomainKeys(name, o), AddrKeys(addr)...)
	return search(t, keys, len(keys))
}

// AddressKeys lists the keys LookupAddress tries on a fixed table, most
// specific first. Keys are lowercased, as smtpd does before every access
// lookup.
func AddressKeys(addr string, o AccessOptions) []string {
	if addr == "" {
		null := o.NullKey
		if null == "" {
			null = "<>"
		}
		return []string{null}
	}
	addr = foldASCII(addr)
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		// Postfix qualifies every address before this point (it warns "no
		// @domain in address" otherwise); moat's callers should too. An
		// unqualified address is looked up whole only.
		return []string{addr}
	}
	local, domain := addr[:at], addr[at+1:]
	keys := []string{addr}
	bare := stripExtension(local, o.RecipientDelimiter)
	if bare != local {
		keys = append(keys, bare+"@"+domain)
	}
	if domain != "" {
		keys = append(keys, DomainKeys(domain, o)...)
	}
	keys = append(keys, local+"@")
	if bare != local {
		keys = append(keys, bare+"@")
	}
	return keys
}

// stripExtension removes the address extension from a localpart: the text
// from the first recipient_delimiter character on (postconf(5)
// recipient_delimiter). With "-" as a delimiter, "owner-list" and
// "list-request" keep their names, as Postfix special-cases them for
// mailing lists; a localpart that starts with a delimiter is not split.
func stripExtension(local, delims string) string {
	if delims == "" {
		return local
	}
	if strings.Contains(delims, "-") {
		if strings.HasPrefix(local, "owner-") || strings.HasSuffix(local, "-request") {
			return local
		}
	}
	i := strings.IndexAny(local, delims)
	if i <= 0 {
		return local
	}
	return local[:i]
}

// DomainKeys lists a name and its parent domains, down to the top-level
// domain: "a.b.c", then "b.c", "c" (or ".b.c", ".c" when
// !o.ParentMatchesSubdomains). Keys are lowercased.
func DomainKeys(domain string, o AccessOptions) []string {
	if domain == "" {
		return nil
	}
	domain = foldASCII(domain)
	keys := []string{domain}
	for rest := domain; ; {
		i := strings.IndexByte(rest[1:], '.')
		if i < 0 {
			break
		}
		rest = rest[i+1:] // ".b.c"
		if o.ParentMatchesSubdomains {
			if len(rest) == 1 {
				break // a trailing dot: never look up the empty key
			}
			keys = append(keys, rest[1:])
		} else {
			keys = append(keys, rest)
		}
	}
	return keys
}

// AddrKeys lists a client address and its shorter network prefixes:
// "192.168.10.1", "192.168.10", "192.168", "192"; for IPv6 the compressed
// form truncated at each ":" ("2001:db8::1", "2001:db8:", "2001:db8",
// "2001"), as access(5) describes. An IPv4-mapped IPv6 address is looked
// up in its IPv4 form, which is how Postfix's smtpd records such a client.
// Text that is not an IP address is looked up as is, without prefixes.
func AddrKeys(addr string) []string {
	if addr == "" {
		return nil
	}
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return []string{foldASCII(addr)}
	}
	ip = ip.Unmap().WithZone("")
	s := ip.String()
	sep := byte('.')
	if ip.Is6() {
		sep = ':'
	}
	keys := []string{s}
	for {
		i := strings.LastIndexByte(s, sep)
		if i <= 0 {
			break
		}
		s = s[:i]
		if strings.Trim(s, ":") == "" {
			break // "::1" has no shorter prefix worth a lookup
		}
		keys = append(keys, s)
	}
	return keys
}
