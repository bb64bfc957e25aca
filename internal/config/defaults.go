package config

// Version is moat's release, shown as mail_version.
const Version = "0.1.0"

// Safer is one of moat's deliberate departures from Postfix's defaults.
type Safer struct {
	Name, Value string
	Why         string
}

// SaferDefaults is moat's one list of defaults that differ from Postfix 3.7
// for security; docs/DEFAULTS.md explains each with Postfix's value beside
// it, and the differential tests read this list to know where moat may
// differ from `postconf -d`.
func SaferDefaults() []Safer {
	return []Safer{
		{"smtpd_banner", "$myhostname ESMTP", "do not announce the software name (seed 000/001: hide the version)"},
		{"disable_vrfy_command", "yes", "VRFY must not disclose mailboxes (seed 000/001)"},
		{"smtpd_helo_required", "yes", "clients must say HELO/EHLO before MAIL (seed 001)"},
		{"smtpd_forbid_bare_newline", "reject", "refuse bare LF/CR to stop SMTP smuggling (CVE-2023-51764); $mynetworks is exempt"},
		{"smtpd_forbid_unauth_pipelining", "yes", "reject clients that pipeline without PIPELINING (SMTP smuggling, spam bots)"},
		{"smtpd_tls_protocols", ">=TLSv1.2", "TLS 1.0/1.1 are deprecated (RFC 8996)"},
		{"smtpd_tls_mandatory_protocols", ">=TLSv1.2", "TLS 1.0/1.1 are deprecated (RFC 8996)"},
		{"smtp_tls_protocols", ">=TLSv1.2", "TLS 1.0/1.1 are deprecated (RFC 8996)"},
		{"smtp_tls_mandatory_protocols", ">=TLSv1.2", "TLS 1.0/1.1 are deprecated (RFC 8996)"},
		{"lmtp_tls_protocols", ">=TLSv1.2", "TLS 1.0/1.1 are deprecated (RFC 8996)"},
		{"lmtp_tls_mandatory_protocols", ">=TLSv1.2", "TLS 1.0/1.1 are deprecated (RFC 8996)"},
		{"smtpd_tls_auth_only", "yes", "never offer AUTH over cleartext"},
		{"smtp_tls_security_level", "may", "encrypt outbound mail opportunistically"},
		{"syslog_name", "postfix", "log as postfix/... so fail2ban, pflogsumm and grep patterns work"},
		{"config_directory", "/etc/moat", "moat installs beside Postfix; -c /etc/postfix reads Postfix's files"},
		{"compatibility_level", "3.6", "newest level Postfix 3.7 knows: relay-safe smtpd_relay_restrictions, empty relay_domains, mynetworks_style = host"},
		{"mail_name", "moat", "the software's own name"},
		{"mail_version", Version, "the software's own version"},
		{"allow_percent_hack", "no", "user%domain rewriting is a relay-abuse vector from the UUCP era"},
		{"swap_bangpath", "no", "site!user rewriting is a UUCP-era relic that widens the address attack surface"},
		{"show_user_unknown_table_name", "no", "do not reveal internal table names in reject replies"},
		{"biff", "no", "no UDP notifications to comsat on every delivery"},
	}
}

// IsSaferDefault reports whether moat's default for name differs from
// Postfix's on purpose.
func IsSaferDefault(name string) bool {
	for _, s := range SaferDefaults() {
		if s.Name == name {
			return true
		}
	}
	return false
}

// MoatParams are parameters Postfix does not have, for behaviour moat adds;
// docs/DEFAULTS.md ("Parameters moat adds") explains each. They sort into
// `postconf -d` like the rest, and the differential tests skip them.
func MoatParams() []Param {
	return []Param{
		// Postfix bounds each read (smtpd_timeout) but not a whole
		// session, so a client dripping a byte every few minutes holds a
		// session slot for as long as it likes.
		{Name: "smtpd_session_time_limit", Default: "3600s", Type: TypeTime, Unit: 's', Moat: true},
		// Postfix always asks the system resolver; tests (and admins
		// with a local validating resolver on another port) need to name
		// the servers. Empty means /etc/resolv.conf.
		{Name: "dns_servers", Default: "", Type: TypeString, Moat: true},
		// Go's server-side session tickets break mail from some large
		// senders (golang/go#70232), so they are off unless asked for.
		{Name: "smtpd_tls_session_tickets", Default: "no", Type: TypeBool, Moat: true},
		// The built-in SASL backend's users (smtpd_sasl_type = moat):
		// login name -> password hash, any table type.
		{Name: "smtpd_sasl_password_maps", Default: "", Type: TypeString, Moat: true},
		// MTA-STS (RFC 8461) is built in rather than an external policy
		// daemon; it is opt-in because an enforce policy can hold mail
		// back (internal/mtasts, docs/MTA-STS.md).
		{Name: "smtp_mta_sts", Default: "no", Type: TypeBool, Moat: true},
		{Name: "smtp_mta_sts_cache_directory", Default: "$data_directory/mta-sts", Type: TypeString, Moat: true},
		// Empty: the system roots. A file for private PKI and tests.
		{Name: "smtp_mta_sts_CAfile", Default: "", Type: TypeString, Moat: true},
		{Name: "smtp_mta_sts_timeout", Default: "10s", Type: TypeTime, Unit: 's', Moat: true},
	}
}

// IsMoatParam reports whether name is one of MoatParams.
func IsMoatParam(name string) bool {
	for _, p := range MoatParams() {
		if p.Name == name {
			return true
		}
	}
	return false
}

// Obsolete is a parameter or restriction Postfix has removed or that moat
// refuses, with what to use instead.
type Obsolete struct {
	Name, Replacement string
}

// ObsoleteParams are main.cf parameters that are errors in moat, each naming
// its replacement (postconf(5) and RELEASE_NOTES history).
func ObsoleteParams() []Obsolete {
	return []Obsolete{
		{"maps_rbl_domains", "reject_rbl_client DOMAIN in a restriction list"},
		{"smtpd_tls_dcert_file", "smtpd_tls_eccert_file (DSA is obsolete; use ECDSA)"},
		{"smtpd_tls_dkey_file", "smtpd_tls_eckey_file (DSA is obsolete; use ECDSA)"},
		{"smtp_tls_dcert_file", "smtp_tls_eccert_file (DSA is obsolete; use ECDSA)"},
		{"smtp_tls_dkey_file", "smtp_tls_eckey_file (DSA is obsolete; use ECDSA)"},
		{"lmtp_tls_dcert_file", "lmtp_tls_eccert_file (DSA is obsolete; use ECDSA)"},
		{"lmtp_tls_dkey_file", "lmtp_tls_eckey_file (DSA is obsolete; use ECDSA)"},
		{"virtual_maps", "virtual_alias_maps"},
		{"fallback_relay", "smtp_fallback_relay"},
		{"authorized_verp_clients", "smtpd_authorized_verp_clients"},
		{"smtpd_tls_dh512_param_file", "nothing (export ciphers are gone); remove it"},
	}
}

// ObsoleteRestrictions are the restrictions Postfix 3.9 removed, each with
// its replacement in the words of Postfix's warning. They load (a
// configuration written for Postfix still starts), and when one is reached
// the restriction code logs "support for restriction ... has been removed
// in Postfix 3.9; instead, specify REPLACEMENT" and answers "451 4.3.5
// Server configuration error", as Postfix 3.9 does (internal/restrict).
func ObsoleteRestrictions() []Obsolete {
	return []Obsolete{
		{"reject_maps_rbl", `"reject_rbl_client domain-name"`},
		{"check_relay_domains", `"reject_unauth_destination"`},
		{"permit_naked_ip_address", `"permit_mynetworks" or "permit_sasl_authenticated"`},
	}
}
