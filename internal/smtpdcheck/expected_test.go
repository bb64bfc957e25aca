package smtpdcheck

// The reasons differences are kept. Those marked "pending" are behaviour
// of internal/restrict or internal/dns that does not match Postfix yet;
// they are reported in /tmp/smtpd-check-diffs.txt for the engineers who own
// that code, and this table must lose them as they are fixed (the test fails
// on an entry that no longer matches).
const (
	whyObsolete = "by design (issue 6 item 1): permit_naked_ip_address, check_relay_domains and " +
		"reject_maps_rbl answer as Postfix 3.9 does (451 4.3.5 Server configuration error, with the " +
		"3.9 warning; master-3.12/smtpd_deprecated.ref), not with Postfix 3.7's behaviour and " +
		"deprecation warning that smtpd_check.ref records; the list stops there, so the later " +
		"restrictions' answers are not reached"
	whyMapsRBL = "by design: maps_rbl_domains is an obsolete parameter moat refuses " +
		"(reject_rbl_client DOMAIN replaces it; config ObsoleteParams), so the setting is not applied"
	whyRewrite = "not driven: smtpd_check's rewrite command tests smtpd_check_rewrite() " +
		"(local_header_rewrite_clients), which is not a restriction list"
	whyPendingMynetworks = "pending (restrict/matchlist): a mynetworks lookup error must log Postfix's " +
		"\"mynetworks: TABLE: table lookup problem\" and answer 451 4.3.0 <rcpt>: Temporary lookup " +
		"failure, not 451 4.3.5 Server configuration error"
	whyBadMynetworks = "by design: moat refuses a mynetworks entry with host bits set " +
		"(168.100.3.1/27) when the lists are built — an smtpd would not start — while Postfix " +
		"warns and answers 451 4.3.0 when permit_mynetworks is evaluated; every later check of " +
		"the script gets 451 4.3.5 Server configuration error"
	whyPendingActions = "pending (restrict): the Standalone session must log HOLD, DISCARD and FILTER " +
		"as Postfix's \"<queue id>: hold: MAIL from ...: <addr>: Sender address triggers HOLD action\""
	whyPendingNSName = "pending (restrict): Postfix names the whole address in the NS lookup " +
		"warning of check_recipient_ns_access (\"for foo@example.tld\")"
	whyPendingNullMX = "pending (restrict): reject_unknown_sender/recipient_domain must answer RFC 7505 " +
		"null MX (dns.MX status NullMX) with 550 5.7.27 / 556 5.1.10 \"Domain D does not accept mail " +
		"(nullMX)\", and check_sender_mx_access must skip a null MX silently"
	whyPendingFilterNullMX = "pending (dns): Postfix recognises a null MX before " +
		"smtpd_dns_reply_filter, so the filter neither drops nor fails it"
)

// expectedDiffs lists every line by which moat's output may differ from
// Postfix's .ref files, with the reason.
func expectedDiffs() []expectedDiff {
	const p = `\./smtpd_check: `
	const q = p + `<queue id>: `
	return []expectedDiff{
		// smtpd_check.in: Postfix 3.7's output for restrictions 3.9 removed.
		{File: "smtpd_check", Line: `\+` + p + `warning: maps_rbl_domains = dnsbltest\.porcupine\.org not applied: .*`, Why: whyMapsRBL},
		{File: "smtpd_check", Line: `-` + p + `warning: restriction permit_naked_ip_address is deprecated\. Use permit_mynetworks or permit_sasl_authenticated instead`, Why: whyObsolete},
		{File: "smtpd_check", Line: `-` + p + `warning: support for restriction "(check_relay_domains|reject_maps_rbl)" will be removed from Postfix; use "(reject_unauth_destination|reject_rbl_client domain-name)" instead`, Why: whyObsolete},
		{File: "smtpd_check", Line: `\+` + p + `warning: support for restriction "(permit_naked_ip_address|check_relay_domains|reject_maps_rbl)" has been removed in Postfix 3\.9; instead, specify .*`, Why: whyObsolete},
		{File: "smtpd_check", Line: `\+` + q + `reject: (HELO|RCPT|CONNECT) from [^ ]+: 451 4\.3\.5 Server configuration error; .*`, Why: whyObsolete},
		{File: "smtpd_check", Line: `\+451 4\.3\.5 Server configuration error`, Why: whyObsolete},
		{File: "smtpd_check", After: `helo (123\.123\.123\.123|\[1\.2\.3\.4\]|1\.2\.3\.4)|rcpt foo@(porcupine\.org|ibm\.com)|client (spike\.porcupine\.org 168\.100\.3\.2|foo 131\.155\.210\.17)`, Line: `-OK`, Why: whyObsolete},
		{File: "smtpd_check", Line: `-(` + q + `reject: HELO from foo\[131\.155\.210\.17\]: )?501 5\.5\.2 <[^>]*>: Helo command rejected: invalid ip address(; .*)?`, Why: whyObsolete},
		{File: "smtpd_check", Line: `-(` + q + `reject: RCPT from foo\[[0-9.]+\]: )?554 5\.7\.1 <foo@ibm\.com>: Recipient address rejected: Relay access denied(; .*)?`, Why: whyObsolete},
		{File: "smtpd_check", Line: `-(` + q + `reject: CONNECT from foo\[127\.0\.0\.2\]: )?554 5\.7\.1 Service unavailable; Client host \[127\.0\.0\.2\] blocked using dnsbltest\.porcupine\.org(; .*)?`, Why: whyObsolete},

		// smtpd_error.in
		{File: "smtpd_error", Line: `-` + p + `warning: mynetworks: fail:1_mynetworks: table lookup problem`, Why: whyPendingMynetworks},
		{File: "smtpd_error", Line: `\+` + p + `warning: mynetworks: fail:1_mynetworks: table lookup problem: .*`, Why: whyPendingMynetworks},
		{File: "smtpd_error", After: `rcpt reject@dunno\.domain`, Line: `-(` + q + `reject: RCPT from [^ ]+: )?451 4\.3\.0 <reject@dunno\.domain>: Temporary lookup failure(; .*)?`, Why: whyPendingMynetworks},
		{File: "smtpd_error", After: `rcpt reject@dunno\.domain`, Line: `\+(` + q + `reject: RCPT from [^ ]+: )?451 4\.3\.5 Server configuration error(; .*)?`, Why: whyPendingMynetworks},
		{File: "smtpd_error", Line: `\+` + p + `warning: mynetworks: non-null host address bits in "168\.100\.3\.1/27", perhaps you should use "168\.100\.3\.0/27" instead`, Why: whyBadMynetworks},
		{File: "smtpd_error", Line: `\+(` + q + `reject: (MAIL|RCPT) from [^ ]+: )?451 4\.3\.5 Server configuration error(; .*)?`, Why: whyBadMynetworks},
		{File: "smtpd_error", After: `mail <>`, Line: `-(` + p + `warning: fail:1_sender_access lookup error for "<>"|(` + q + `reject: MAIL from [^ ]+: )?451 4\.3\.5 <>: Sender address rejected: Server configuration error(; .*)?)`, Why: whyBadMynetworks},
		{File: "smtpd_error", After: `rcpt reject@dunno\.domain`, Line: `-` + p + `warning: (fail:1_certs lookup error for "abcdef"|relay_clientcerts: lookup error for fingerprint 'abcdef', pkey fingerprint abcdef)`, Why: whyBadMynetworks},
		{File: "smtpd_error", After: `rcpt user@example\.com`, Line: `-(OK|` + p + `warning: (mydestination: fail:1_mydestination: table lookup problem|fail:1_virtual lookup error for "user@example\.com"))`, Why: whyBadMynetworks},
		{File: "smtpd_error", After: `rcpt user@example\.com`, Line: `-(` + q + `reject: RCPT from [^ ]+: )?451 4\.3\.0 <user@example\.com>: Temporary lookup failure(; .*)?`, Why: whyBadMynetworks},
		{File: "smtpd_error", After: `rewrite`, Line: `\+bad command: rewrite is not supported by smtpd-check`, Why: whyRewrite},
		{File: "smtpd_error", After: `rewrite`, Line: `-(` + p + `warning: fail:1_rewrite lookup error for "131\.155\.210\.17"|(` + q + `reject: RCPT from [^ ]+: )?451 4\.3\.0 Temporary lookup error(; .*)?)`, Why: whyRewrite},

		// smtpd_check.in4
		{File: "smtpd_check4", Line: `-` + q + `(filter|hold|discard): MAIL from localhost\[127\.0\.0\.1\]: <[^>]+>: Sender address (triggers (FILTER text:text|HOLD action|DISCARD action)|text); from=<[^>]+> proto=SMTP`, Why: whyPendingActions},

		// smtpd_server.in
		{File: "smtpd_server", Line: `-` + p + `warning: Unable to look up NS host for foo@example\.tld: Host not found`, Why: whyPendingNSName},
		{File: "smtpd_server", Line: `\+` + p + `warning: Unable to look up NS host for example\.tld: Host not found`, Why: whyPendingNSName},

		// smtpd_nullmx.in
		{File: "smtpd_nullmx", After: `(mail sname|rcpt rname)@nullmx\.porcupine\.org`, Line: `\+OK`, Why: whyPendingNullMX},
		{File: "smtpd_nullmx", Line: `-(` + q + `reject: (MAIL|RCPT) from [^ ]+: )?(550 5\.7\.27|556 5\.1\.10) <[sr]name@nullmx\.porcupine\.org>: (Sender|Recipient) address rejected: Domain nullmx\.porcupine\.org does not accept mail \(nullMX\)(; .*)?`, Why: whyPendingNullMX},
		{File: "smtpd_nullmx", Line: `\+` + p + `warning: Unable to look up MX host  for Sender address sname@nullmx\.porcupine\.org: Malformed domain name`, Why: whyPendingNullMX},

		// smtpd_dns_filter.in
		{File: "smtpd_dns_filter", After: `helo nullmx\.porcupine\.org|mail user@nullmx\.porcupine\.org`, Line: `\+` + p + `warning: smtpd_dns_reply_filter: unknown DNS filter action: "oops"`, Why: whyPendingFilterNullMX},
		{File: "smtpd_dns_filter", Line: `\+` + p + `(ignoring DNS RR: nullmx\.porcupine\.org\. TTL IN MX 0 \.|warning: nullmx\.porcupine\.org: MX or address lookup error: DNS reply filter drops all results)`, Why: whyPendingFilterNullMX},
		{File: "smtpd_dns_filter", After: `mail user@nullmx\.porcupine\.org`, Line: `\+OK`, Why: whyPendingFilterNullMX},
		{File: "smtpd_dns_filter", Line: `-(` + q + `reject: MAIL from [^ ]+: )?550 5\.7\.27 <user@nullmx\.porcupine\.org>: Sender address rejected: Domain nullmx\.porcupine\.org does not accept mail \(nullMX\)(; .*)?`, Why: whyPendingFilterNullMX},
	}
}
