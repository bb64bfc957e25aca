package restrict

import (
	"fmt"
	"strings"

	"moat/internal/dns"
	"moat/internal/maps"
)

// argKind is what follows a restriction that takes an argument.
type argKind int

const (
	argMap    argKind = iota // type:name
	argDomain                // a DNS list domain
	argPolicy                // inet:host:port or unix:path
	argNumber                // seconds
)

// argKinds lists the restrictions that consume the next token
// (postconf(5), smtpd_check.c is_map_command() and the DNS lists).
var argKinds = map[string]argKind{
	"check_client_access": argMap, "check_reverse_client_access": argMap,
	"check_helo_access": argMap, "check_sender_access": argMap,
	"check_recipient_access": argMap, "check_etrn_access": argMap,
	"check_helo_mx_access": argMap, "check_helo_ns_access": argMap,
	"check_sender_mx_access": argMap, "check_sender_ns_access": argMap,
	"check_recipient_mx_access": argMap, "check_recipient_ns_access": argMap,
	"check_ccert_access": argMap, "check_sasl_access": argMap,
	"check_client_a_access": argMap, "check_reverse_client_a_access": argMap,
	"check_client_mx_access": argMap, "check_client_ns_access": argMap,
	"check_reverse_client_hostname_access": argMap, "check_reverse_client_hostname_a_access": argMap,
	"check_reverse_client_hostname_mx_access": argMap, "check_reverse_client_hostname_ns_access": argMap,
	"check_helo_a_access": argMap, "check_sender_a_access": argMap, "check_recipient_a_access": argMap,
	"reject_rbl_client": argDomain, "reject_rbl": argDomain,
	"reject_rhsbl_client": argDomain, "reject_rhsbl_reverse_client": argDomain,
	"reject_rhsbl_helo": argDomain, "reject_rhsbl_sender": argDomain,
	"reject_rhsbl_recipient": argDomain,
	"permit_dnswl_client":    argDomain, "permit_rhswl_client": argDomain,
	"check_policy_service": argPolicy,
	"sleep":                argNumber,
}

// simple are the restrictions without an argument that this version
// evaluates.
var simple = map[string]bool{
	"permit": true, "reject": true, "defer": true, "defer_if_permit": true, "defer_if_reject": true,
	"warn_if_reject": true, "permit_mynetworks": true, "permit_inet_interfaces": true,
	"permit_sasl_authenticated": true, "permit_tls_clientcerts": true, "permit_tls_all_clientcerts": true,
	"reject_unauth_destination": true, "defer_unauth_destination": true, "permit_auth_destination": true,
	"permit_mx_backup": true, "reject_unauth_pipelining": true,
	"reject_unknown_client_hostname": true, "reject_unknown_client": true,
	"reject_unknown_reverse_client_hostname": true,
	"reject_invalid_helo_hostname":           true, "reject_invalid_hostname": true,
	"reject_non_fqdn_helo_hostname": true, "reject_non_fqdn_hostname": true,
	"reject_unknown_helo_hostname": true, "reject_unknown_hostname": true,
	"reject_non_fqdn_sender": true, "reject_non_fqdn_recipient": true,
	"reject_unknown_sender_domain": true, "reject_unknown_recipient_domain": true,
	"reject_unknown_address": true,
	"reject_unlisted_sender": true, "reject_unlisted_recipient": true, "check_recipient_maps": true,
	"reject_sender_login_mismatch": true, "reject_authenticated_sender_login_mismatch": true,
	"reject_known_sender_login_mismatch":           true,
	"reject_unauthenticated_sender_login_mismatch": true,
	"reject_multi_recipient_bounce":                true, "reject_plaintext_session": true,
	// removed in Postfix 3.9: they load and answer 451 4.3.5 when reached
	"reject_maps_rbl": true, "check_relay_domains": true, "permit_naked_ip_address": true,
}

// notYet are restrictions Postfix has that this version refuses at
// start-up, with why.
var notYet = map[string]string{
	"reject_unverified_sender":    "address verification (verify(8)) is not supported yet",
	"reject_unverified_recipient": "address verification (verify(8)) is not supported yet",
}

// validate checks one list at start-up and opens the tables it names.
func (l *Lists) validate(param string, list []string, opts maps.Options) error {
	for i := 0; i < len(list); i++ {
		name := list[i]
		lower := strings.ToLower(name)
		if strings.Contains(name, ":") {
			if err := l.openTable(param, name, opts); err != nil {
				return err
			}
			continue
		}
		if why, ok := notYet[lower]; ok {
			return fmt.Errorf("parameter %s: restriction %q: %s; remove it", param, name, why)
		}
		if kind, ok := argKinds[lower]; ok {
			if i+1 >= len(list) {
				return fmt.Errorf("parameter %s: restriction %s needs an argument", param, name)
			}
			i++
			arg := list[i]
			switch kind {
			case argMap:
				if !strings.Contains(arg, ":") {
					return fmt.Errorf("parameter %s: restriction %s: bad argument %q: need maptype:mapname", param, name, arg)
				}
				if err := l.openTable(param, arg, opts); err != nil {
					return err
				}
			case argPolicy:
				if !strings.Contains(arg, ":") {
					return fmt.Errorf("parameter %s: restriction %s must be followed by transport:server", param, name)
				}
				if err := l.policy.add(arg); err != nil {
					return fmt.Errorf("parameter %s: %w", param, err)
				}
			case argDomain:
				// The reply filter is parsed here, once, not per query.
				if _, filter := splitListDomain(arg); filter != "" {
					f, err := dns.ParseFilter(strings.TrimPrefix(filter, "="))
					if err != nil {
						return fmt.Errorf("parameter %s: restriction %s %s: %w", param, name, arg, err)
					}
					l.filters[filter] = f
				}
			case argNumber:
				if strings.Trim(arg, "0123456789") != "" || arg == "" {
					return fmt.Errorf("parameter %s: restriction %s must be followed by number", param, name)
				}
			}
			continue
		}
		if simple[lower] {
			continue
		}
		if _, ok := l.classes[name]; ok {
			continue
		}
		return fmt.Errorf("parameter %s: unknown restriction %q (not a Postfix restriction or a smtpd_restriction_classes name)", param, name)
	}
	return nil
}

func (l *Lists) openTable(param, spec string, opts maps.Options) error {
	if _, ok := l.tables[spec]; ok {
		return nil
	}
	t, err := maps.Open(spec, opts)
	if err != nil {
		return fmt.Errorf("parameter %s: %w", param, err)
	}
	l.tables[spec] = t
	return nil
}

// hasRequired is has_required(): a list (or a class it names) contains a
// restriction that refuses by default, so the server is no open relay.
func (l *Lists) hasRequired(list []string) bool {
	return l.hasRequiredDepth(list, 0)
}

func (l *Lists) hasRequiredDepth(list []string, depth int) bool {
	if depth > 10 {
		return false
	}
	for i := 0; i < len(list); i++ {
		n := strings.ToLower(list[i])
		if n == "warn_if_reject" {
			i++
			continue
		}
		switch n {
		case "reject_unauth_destination", "defer_unauth_destination", "reject", "defer", "defer_if_permit", "check_relay_domains":
			return true
		}
		if c, ok := l.classes[list[i]]; ok && l.hasRequiredDepth(c, depth+1) {
			return true
		}
	}
	return false
}
