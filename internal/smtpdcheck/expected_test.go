package smtpdcheck

// The reasons differences are kept. A "pending" reason (none today) marks
// behaviour of internal/restrict or internal/dns that does not match
// Postfix yet; the test fails on an entry that no longer matches, so the
// table loses those as they are fixed.
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
	whyResolver = "by design: smtpd_check's address-resolution stub never consults " +
		"virtual_alias_domains, so its warning comes from the later virtual_alias_maps lookup of the " +
		"address; the driver uses moat's real resolver (internal/resolve), which, like trivial-rewrite, " +
		"also matches a local domain against virtual_alias_domains (= $virtual_alias_maps) to warn " +
		"about domains listed in both, and so meets the failing table first; the reply is the same " +
		"451 4.3.0 <user@example.com>: Temporary lookup failure"
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
		{File: "smtpd_error", After: `rcpt user@example\.com`, Line: `-` + p + `warning: fail:1_virtual lookup error for "user@example\.com"`, Why: whyResolver},
		{File: "smtpd_error", After: `rcpt user@example\.com`, Line: `\+` + p + `warning: virtual_alias_domains: fail:1_virtual: table lookup problem`, Why: whyResolver},
		{File: "smtpd_error", After: `rewrite`, Line: `\+bad command: rewrite is not supported by smtpd-check`, Why: whyRewrite},
		{File: "smtpd_error", After: `rewrite`, Line: `-(` + p + `warning: fail:1_rewrite lookup error for "131\.155\.210\.17"|(` + q + `reject: RCPT from [^ ]+: )?451 4\.3\.0 Temporary lookup error(; .*)?)`, Why: whyRewrite},
	}
}
