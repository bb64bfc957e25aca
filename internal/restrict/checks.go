package restrict

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"moat/internal/config"
	"moat/internal/dns"
	"moat/internal/hostname"
	"moat/internal/maillog"
	"moat/internal/matchlist"
	"moat/internal/resolve"
	"moat/internal/smtp"
)

// one evaluates a single restriction: the long if-else chain of
// generic_checks(). name is lower case; orig as written (class names are
// case-sensitive); arg the argument it consumed, if any.
func (e *eval) one(name, orig, arg string, rest []string, rn, rc, defACL string) status {
	v := e.v
	p := &e.l.p
	switch name {
	case "permit":
		e.ignoredAfter(rest, name)
		return permitted
	case "defer":
		st := e.reject(false, p.deferCode, "4.3.2", "<%s>: %s rejected: Try again later", rn, rc)
		e.ignoredAfter(rest, name)
		return st
	case "reject":
		st := e.reject(false, p.reject, "5.7.1", "<%s>: %s rejected: Access denied", rn, rc)
		e.ignoredAfter(rest, name)
		return st
	case "reject_unauth_pipelining":
		// smtpd has already refused improperly pipelined commands
		// (smtpd_forbid_unauth_pipelining, which New requires when a
		// list names this), so a command that gets here was not one.
		return dunno
	case "check_policy_service":
		return e.policyService(arg, rn, rc, defACL)
	case "defer_if_permit":
		e.deferIfPermit(450, "4.7.0", "<%s>: %s rejected: defer_if_permit requested", rn, rc)
		return dunno
	case "defer_if_reject":
		e.deferIfReject(450, "4.7.0", "<%s>: %s rejected: defer_if_reject requested", rn, rc)
		return dunno
	case "sleep":
		n, _ := strconv.Atoi(arg)
		t := time.NewTimer(time.Duration(n) * time.Second)
		select {
		case <-t.C:
		case <-e.ctx.Done():
			t.Stop()
		}
		return dunno

	// client name and address
	case "reject_unknown_client_hostname", "reject_unknown_client":
		if st := v.ClientNameStatus; st != 2 {
			code := 450
			if st == 5 || st == 0 {
				code = p.unknownClient
			}
			return e.reject(false, code, "4.7.1", "Client host rejected: cannot find your hostname, [%s]", addrText(v.ClientAddr))
		}
		return dunno
	case "reject_unknown_reverse_client_hostname":
		if st := v.ReverseNameStatus; st != 2 {
			code := 450
			if st == 5 || st == 0 {
				code = p.unknownClient
			}
			return e.reject(false, code, "4.7.1", "Client host rejected: cannot find your reverse hostname, [%s]", addrText(v.ClientAddr))
		}
		return dunno
	case "permit_inet_interfaces":
		if e.l.resolver.IsOwnAddr(v.ClientAddr) {
			return permitted
		}
		return dunno
	case "permit_mynetworks":
		if e.l.mynetworks == nil {
			// a standalone build keeps a bad mynetworks for run time,
			// as Postfix does
			e.l.warn("%s", strings.TrimPrefix(e.l.mynetworksErr.Error(), "parameter "))
			return e.dictRetry(rn)
		}
		ok, err := e.l.mynetworks.Match(e.clientName(), v.ClientAddr)
		if err != nil {
			e.lookupProblem(err)
			return e.dictRetry(rn)
		}
		if ok {
			return permitted
		}
		return dunno
	case "check_client_access":
		return e.clientAccess(arg, e.clientName(), e.namaddr(), classClient, defACL)
	case "check_reverse_client_access", "check_reverse_client_hostname_access":
		return e.clientAccess(arg, e.reverseName(), e.namaddr(), classClient, defACL)
	case "check_client_a_access", "check_client_mx_access", "check_client_ns_access":
		if n := e.clientName(); n != "unknown" {
			st := e.serverAccess(arg, n, serverType(name), e.namaddr(), classClient, defACL)
			return e.forbidWhitelist(name, st, n)
		}
		return dunno
	case "check_reverse_client_hostname_a_access", "check_reverse_client_hostname_mx_access", "check_reverse_client_hostname_ns_access",
		"check_reverse_client_a_access":
		if n := e.reverseName(); n != "unknown" {
			st := e.serverAccess(arg, n, serverType(name), e.namaddr(), classClient, defACL)
			return e.forbidWhitelist(name, st, n)
		}
		return dunno
	case "reject_maps_rbl", "check_relay_domains", "permit_naked_ip_address":
		for _, o := range config.ObsoleteRestrictions() {
			if o.Name == name {
				e.l.warn("support for restriction \"%s\" has been removed in Postfix 3.9; instead, specify %s", name, o.Replacement)
			}
		}
		return e.configError()
	case "reject_rbl_client", "reject_rbl":
		return e.rblAddr(arg, v.ClientAddr, classClient)
	case "reject_rhsbl_client":
		if n := e.clientName(); n != "unknown" {
			return e.rblDomain(arg, n, classClient)
		}
		return dunno
	case "reject_rhsbl_reverse_client":
		if n := e.reverseName(); n != "unknown" {
			return e.rblDomain(arg, n, classClient)
		}
		return dunno
	case "permit_dnswl_client":
		return e.dnswlAddr(arg, rc)
	case "permit_rhswl_client":
		return e.rhswl(arg, rc)
	case "check_ccert_access":
		if fp := e.fingerprint(); fp != "" {
			cn := ""
			if v.TLS != nil {
				cn = v.TLS.PeerSubject
			}
			return e.exactAccess(arg, fp, cn, classCCert, defACL)
		}
		return dunno
	case "check_sasl_access":
		if v.SASLUser != "" {
			if strings.Contains(v.SASLUser, "@") {
				return e.mailAccess(arg, v.SASLUser, v.SASLUser, classSASL, defACL)
			}
			return e.exactAccess(arg, v.SASLUser, v.SASLUser, classSASL, defACL)
		}
		return dunno

	// HELO
	case "check_helo_access":
		if e.helo != nil {
			return e.domainAccess(arg, *e.helo, *e.helo, classHelo, defACL)
		}
		return dunno
	case "reject_invalid_helo_hostname", "reject_invalid_hostname":
		if e.helo != nil {
			if strings.HasPrefix(*e.helo, "[") {
				return e.invalidHostaddr(*e.helo, *e.helo, classHelo)
			}
			return e.invalidHostname(*e.helo, *e.helo, classHelo)
		}
		return dunno
	case "reject_unknown_helo_hostname", "reject_unknown_hostname":
		if e.helo != nil {
			if strings.HasPrefix(*e.helo, "[") {
				return e.invalidHostaddr(*e.helo, *e.helo, classHelo)
			}
			return e.unknownHostname(*e.helo, *e.helo, classHelo)
		}
		return dunno
	case "reject_non_fqdn_helo_hostname", "reject_non_fqdn_hostname":
		if e.helo != nil {
			if strings.HasPrefix(*e.helo, "[") {
				return e.invalidHostaddr(*e.helo, *e.helo, classHelo)
			}
			return e.nonFQDNHostname(*e.helo, *e.helo, classHelo)
		}
		return dunno
	case "reject_rhsbl_helo":
		if e.helo != nil {
			return e.rblDomain(arg, *e.helo, classHelo)
		}
		return dunno
	case "check_helo_mx_access", "check_helo_ns_access", "check_helo_a_access":
		if e.helo != nil {
			st := e.serverAccess(arg, *e.helo, serverType(name), *e.helo, classHelo, defACL)
			return e.forbidWhitelist(name, st, *e.helo)
		}
		return dunno

	// sender
	case "check_sender_access":
		if e.sender != nil {
			if *e.sender == "" {
				return e.exactAccess(arg, e.l.access.NullKey, "", classSender, defACL)
			}
			return e.mailAccess(arg, *e.sender, *e.sender, classSender, defACL)
		}
		return dunno
	case "reject_unknown_sender_domain", "reject_unknown_address":
		if e.sender != nil && *e.sender != "" {
			return e.unknownAddress(*e.sender, *e.sender, classSender)
		}
		return dunno
	case "reject_non_fqdn_sender":
		if e.sender != nil && *e.sender != "" {
			return e.nonFQDNAddress(*e.sender, *e.sender, classSender)
		}
		return dunno
	case "reject_authenticated_sender_login_mismatch", "reject_known_sender_login_mismatch", "reject_unauthenticated_sender_login_mismatch":
		return e.loginMismatch(name)
	case "check_sender_mx_access", "check_sender_ns_access", "check_sender_a_access":
		if e.sender != nil && *e.sender != "" {
			st := e.serverAccess(arg, *e.sender, serverType(name), *e.sender, classSender, defACL)
			return e.forbidWhitelist(name, st, *e.sender)
		}
		return dunno
	case "reject_rhsbl_sender":
		if e.sender != nil && *e.sender != "" {
			return e.rblDomain(arg, *e.sender, classSender)
		}
		return dunno
	case "reject_unlisted_sender":
		if e.sender != nil && *e.sender != "" {
			return e.senderRcptMaps(*e.sender)
		}
		return dunno

	// recipient
	case "check_recipient_access":
		if e.recipient != nil {
			return e.mailAccess(arg, *e.recipient, *e.recipient, classRecipient, defACL)
		}
		return dunno
	case "permit_mx_backup":
		if e.recipient != nil {
			return e.permitMXBackup(*e.recipient, *e.recipient, classRecipient)
		}
		return dunno
	case "permit_auth_destination":
		if e.recipient != nil {
			return e.permitAuthDestination(*e.recipient)
		}
		return dunno
	case "reject_unauth_destination", "defer_unauth_destination":
		if e.recipient != nil {
			code := p.relay
			if name == "defer_unauth_destination" {
				code = p.relayDefer()
			}
			return e.rejectUnauthDestination(*e.recipient, code)
		}
		return dunno
	case "permit_sasl_authenticated":
		if v.SASLUser != "" {
			return permitted
		}
		return dunno
	case "permit_tls_all_clientcerts":
		if v.TLS != nil && v.TLS.PeerVerified {
			return permitted
		}
		return dunno
	case "permit_tls_clientcerts":
		return e.permitTLSClientCerts()
	case "reject_unknown_recipient_domain":
		if e.recipient != nil && *e.recipient != "" {
			return e.unknownAddress(*e.recipient, *e.recipient, classRecipient)
		}
		return dunno
	case "reject_non_fqdn_recipient":
		if e.recipient != nil {
			return e.nonFQDNAddress(*e.recipient, *e.recipient, classRecipient)
		}
		return dunno
	case "check_recipient_mx_access", "check_recipient_ns_access", "check_recipient_a_access":
		if e.recipient != nil && *e.recipient != "" {
			st := e.serverAccess(arg, *e.recipient, serverType(name), *e.recipient, classRecipient, defACL)
			return e.forbidWhitelist(name, st, *e.recipient)
		}
		return dunno
	case "reject_rhsbl_recipient":
		if e.recipient != nil {
			return e.rblDomain(arg, *e.recipient, classRecipient)
		}
		return dunno
	case "check_recipient_maps", "reject_unlisted_recipient":
		if e.recipient != nil && *e.recipient != "" {
			return e.rcptRcptMaps(*e.recipient)
		}
		return dunno
	case "reject_multi_recipient_bounce":
		limit := 0
		if e.where == "DATA" {
			limit = 1
		}
		if e.sender != nil && *e.sender == "" && len(v.Recipients) > limit {
			return e.reject(false, p.mulRcpt, "5.5.3", "<%s>: %s rejected: Multi-recipient bounce", rn, rc)
		}
		return dunno
	case "reject_plaintext_session":
		if v.TLS == nil {
			code, err := p.cfg.Int("plaintext_reject_code")
			if err != nil {
				code = 450
			}
			return e.reject(false, int(code), "4.7.1", "Session encryption is required")
		}
		return dunno

	// ETRN
	case "check_etrn_access":
		if e.etrn != nil {
			return e.domainAccess(arg, *e.etrn, *e.etrn, classEtrn, defACL)
		}
		return dunno
	}
	if list, ok := e.l.classes[orig]; ok {
		return e.generic(list, rn, rc, defACL)
	}
	e.l.warn("unknown smtpd restriction: \"%s\"", orig)
	return e.configError()
}

// lookupProblem logs a match list's failed table as Postfix does
// ("mynetworks: fail:x: table lookup problem").
func (e *eval) lookupProblem(err error) {
	var le *matchlist.LookupError
	if errors.As(err, &le) {
		e.l.warn("%s: %s: table lookup problem", le.Origin, le.Table)
		return
	}
	e.l.warn("%v", err)
}

// relayDefer is the 4xx form of relay_domains_reject_code that
// defer_unauth_destination uses (454 with the defaults? Postfix uses
// var_relay_code with its first digit made 4 by the DSN rule).
func (p *params) relayDefer() int {
	return 400 + p.relay%100
}

func addrText(a netip.Addr) string { return maillog.AddrString(a) }

func (e *eval) reverseName() string {
	if e.v.ReverseClientName == "" {
		return "unknown"
	}
	return e.v.ReverseClientName
}

// fingerprint is the verified client certificate's fingerprint.
func (e *eval) fingerprint() string {
	if e.v.TLS != nil && e.v.TLS.PeerVerified {
		return e.v.TLS.CertFingerprint
	}
	if e.v.TLS == nil && e.s.Fingerprint != "" {
		return e.s.Fingerprint
	}
	return ""
}

// serverType is the record type of a check_*_{mx,ns,a}_access name.
func serverType(name string) dns.Type {
	switch {
	case strings.HasSuffix(name, "_mx_access"):
		return dns.MX
	case strings.HasSuffix(name, "_ns_access"):
		return dns.NS
	}
	return dns.A
}

// forbidWhitelist refuses an OK from an MX or NS access check.
func (e *eval) forbidWhitelist(name string, st status, target string) status {
	if st == permitted {
		e.l.warn("restriction %s returns OK for %s", name, target)
		e.l.warn("this is not allowed for security reasons")
		e.l.warn("use DUNNO instead of OK if you want to make an exception")
		return e.configError()
	}
	return st
}

// truncDot drops one trailing dot, but not from "..": dup_if_truncate().
func truncDot(name string) string {
	if n := len(name); n > 1 && name[n-1] == '.' && name[n-2] != '.' {
		return name[:n-1]
	}
	return name
}

func (e *eval) invalidHostaddr(addr, rn, rc string) status {
	test := addr
	if n := len(addr); n > 2 && addr[0] == '[' && addr[n-1] == ']' {
		test = addr[1 : n-1]
	}
	if _, err := hostname.CheckMailAddr(test); err != nil {
		return e.reject(false, e.l.p.badName, "5.5.2", "<%s>: %s rejected: invalid ip address", rn, rc)
	}
	return dunno
}

func (e *eval) invalidHostname(name, rn, rc string) status {
	test := truncDot(name)
	if !hostname.Valid(test) && !hostname.ValidAddr(test) {
		return e.reject(false, e.l.p.badName, "5.5.2", "<%s>: %s rejected: Invalid name", rn, rc)
	}
	return dunno
}

func (e *eval) nonFQDNHostname(name, rn, rc string) status {
	test := truncDot(name)
	if !hostname.Valid(test) || !strings.Contains(test, ".") {
		return e.reject(false, e.l.p.nonFQDN, "5.5.2", "<%s>: %s rejected: need fully-qualified hostname", rn, rc)
	}
	return dunno
}

func (e *eval) nonFQDNAddress(addr, rn, rc string) status {
	domain := ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		domain = addr[i+1:]
	}
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		return dunno
	}
	test := truncDot(domain)
	if test == "" || !hostname.Valid(test) || !strings.Contains(test, ".") {
		return e.reject(false, e.l.p.nonFQDN, "4.5.2", "<%s>: %s rejected: need fully-qualified address", rn, rc)
	}
	return dunno
}

// resolved is the part of trivial-rewrite's answer the restrictions use.
type resolved struct {
	canon  string // lower case, qualified with $myorigin when bare
	domain string
	class  resolve.Class
	routed bool // the local part routes further (user@x@y, user%x, x!user)
}

// resolveAddr rewrites an address as smtpd's resolve cache does (local
// context: a bare user gets @$myorigin) and classifies its domain.
func (e *eval) resolveAddr(addr string) (resolved, error) {
	a := strings.ToLower(addr)
	if !strings.Contains(a, "@") {
		if a == "" {
			return resolved{class: resolve.Local}, nil
		}
		a += "@" + strings.ToLower(e.l.p.cfg.Get("myorigin"))
	}
	i := strings.LastIndexByte(a, '@')
	local, domain := a[:i], truncDot(a[i+1:])
	r := resolved{canon: local + "@" + domain, domain: domain}
	class, err := e.l.resolver.Domain(domain)
	if err != nil {
		return r, err
	}
	r.class = class
	r.routed = strings.ContainsAny(local, "@%!") && class != resolve.Local
	return r, nil
}

// permitAuthDestination is permit_auth_destination().
func (e *eval) permitAuthDestination(rcpt string) status {
	a, err := e.resolveAddr(rcpt)
	if err != nil {
		e.lookupProblem(err)
		return e.dictRetry(rcpt)
	}
	local := rcpt
	if i := strings.LastIndexByte(rcpt, '@'); i >= 0 {
		local = rcpt[:i]
	}
	// Postfix's trivial-rewrite marks these routed in any class;
	// reject_unauth_destination must not let them through.
	if !e.l.p.untrustedRoute && strings.ContainsAny(local, "@%!") {
		return dunno
	}
	if a.class != resolve.Default {
		return permitted
	}
	return dunno
}

func (e *eval) rejectUnauthDestination(rcpt string, code int) status {
	st := e.permitAuthDestination(rcpt)
	if st == permitted {
		return dunno
	}
	if st == rejected {
		return st
	}
	return e.reject(false, code, "5.7.1", "<%s>: Relay access denied", rcpt)
}

// permitTLSClientCerts is permit_tls_clientcerts: the verified
// certificate's fingerprint (or public key fingerprint) is in
// relay_clientcerts.
func (e *eval) permitTLSClientCerts() status {
	fp := e.fingerprint()
	if fp == "" || e.l.relayCerts == nil {
		return dunno
	}
	keys := []string{fp}
	if e.v.TLS != nil && e.v.TLS.KeyFingerprint != "" && e.v.TLS.KeyFingerprint != fp {
		keys = append(keys, e.v.TLS.KeyFingerprint)
	}
	pk := fp
	if len(keys) > 1 {
		pk = keys[1]
	}
	for _, k := range keys {
		_, ok, err := e.l.relayCerts.Lookup(strings.ToLower(k))
		if err != nil {
			e.l.warn("%s lookup error for \"%s\"", e.l.p.cfg.Get("relay_clientcerts"), k)
			e.l.warn("relay_clientcerts: lookup error for fingerprint '%s', pkey fingerprint %s", fp, pk)
			if e.recipient != nil {
				return e.dictRetry(*e.recipient)
			}
			return e.dictRetry(e.namaddr())
		}
		if ok {
			return permitted
		}
	}
	return dunno
}

// loginMismatch is reject_*_sender_login_mismatch with
// smtpd_sender_login_maps.
func (e *eval) loginMismatch(name string) status {
	if !e.l.p.sasl {
		e.l.warn("restriction `%s' ignored: no SASL support", name)
		return dunno
	}
	if e.sender == nil || *e.sender == "" {
		return dunno
	}
	sender := *e.sender
	owners, found, err := e.loginOwners(sender)
	if err != nil {
		e.l.warn("%v", err)
		return e.dictRetry(sender)
	}
	user := e.v.SASLUser
	if user != "" && name != "reject_unauthenticated_sender_login_mismatch" {
		if name == "reject_known_sender_login_mismatch" && !found {
			return dunno
		}
		for _, o := range owners {
			if strings.EqualFold(o, user) {
				return dunno
			}
		}
		return e.reject(false, 553, "5.7.1", "<%s>: Sender address rejected: not owned by user %s", sender, user)
	}
	if user == "" && found && name != "reject_authenticated_sender_login_mismatch" {
		return e.reject(false, 553, "5.7.1", "<%s>: Sender address rejected: not logged in", sender)
	}
	return dunno
}

// loginOwners looks the sender up in smtpd_sender_login_maps the way
// mail_addr_find() does: the address, user@ (without extension), @domain.
func (e *eval) loginOwners(sender string) ([]string, bool, error) {
	t := e.l.loginMaps
	if t == nil {
		return nil, false, nil
	}
	a, err := e.resolveAddr(sender)
	if err != nil {
		return nil, false, err
	}
	keys := []string{a.canon}
	if d := e.l.access.RecipientDelimiter; d != "" {
		local, domain, _ := strings.Cut(a.canon, "@")
		if i := strings.IndexAny(local, d); i > 0 {
			keys = append(keys, local[:i]+"@"+domain)
		}
	}
	if isLocal, _ := e.l.resolver.IsLocal(a.domain); isLocal {
		local, _, _ := strings.Cut(a.canon, "@")
		keys = append(keys, local)
	}
	keys = append(keys, "@"+a.domain)
	for _, k := range keys {
		v, ok, err := t.Lookup(k)
		if err != nil {
			return nil, false, err
		}
		if ok {
			return config.SplitList(v), true, nil
		}
	}
	return nil, false, nil
}

// senderRcptMaps and rcptRcptMaps are check_sender_rcpt_maps() and
// check_recipient_rcpt_maps(): smtpd's unlisted-address check, once per
// command.
func (e *eval) senderRcptMaps(addr string) status {
	if e.senderChecked {
		return dunno
	}
	if e.l.unlisted == nil {
		return e.noUnlisted()
	}
	e.senderChecked = true
	r, err := e.l.unlisted.Sender(addr, addr)
	return e.unlistedResult(addr, r, err)
}

func (e *eval) rcptRcptMaps(addr string) status {
	if e.rcptChecked {
		return dunno
	}
	if e.l.unlisted == nil {
		return e.noUnlisted()
	}
	e.rcptChecked = true
	r, err := e.l.unlisted.Recipient(addr, addr)
	return e.unlistedResult(addr, r, err)
}

// noUnlisted answers reject_unlisted_* named only inside an access
// table's result: the recipient tables are opened at start-up for the
// lists that name them.
func (e *eval) noUnlisted() status {
	e.l.warn("reject_unlisted_sender/reject_unlisted_recipient in an access table result needs the restriction in a main.cf list too (tables are opened at start-up)")
	return e.configError()
}

func (e *eval) unlistedResult(addr string, r *smtp.Reply, err error) status {
	if err != nil {
		e.l.warn("%v", err)
		return e.dictRetry(addr)
	}
	if r == nil {
		return dunno
	}
	dsn := r.Enhanced
	if dsn == "" {
		dsn = "5.1.1"
	}
	return e.reject(false, r.Code, dsn, "%s", r.Text())
}
