// Package restrict evaluates the SMTP server's restriction lists
// (postconf(5) smtpd_client_restrictions ... smtpd_end_of_data_restrictions,
// smtpd_etrn_restrictions; SMTPD_ACCESS_README) as Postfix's smtpd_check.c
// does: one generic loop over each list, access(5) actions, nested lists
// and smtpd_restriction_classes, warn_if_reject, the defer_if_permit and
// defer_if_reject flags, DNS white and black lists, and the reply codes and
// texts of Postfix 3.7.
//
// Every restriction name is checked when the lists are built: a name
// Postfix does not know is a configuration error at start-up, never a
// silent permit. The three restrictions Postfix 3.9 removed
// (reject_maps_rbl, check_relay_domains, permit_naked_ip_address) load,
// and answer "451 4.3.5 Server configuration error" when reached, logging
// why, as Postfix 3.9 does.
//
// Where moat departs from Postfix, and why:
//   - reject_unverified_sender and reject_unverified_recipient are refused
//     at start-up: moat has no address verification service (verify(8))
//     yet, and a restriction that cannot run must not silently permit.
//   - The access(5) action BCC is logged as unsupported and ignored
//     (cleanup would have to add a recipient after the fact).
//   - reject_unauth_pipelining relies on smtpd_forbid_unauth_pipelining
//     (on by default): smtpd refuses improper pipelining before the lists
//     run, and New refuses a configuration that names the restriction
//     with that switch off.
//   - Tables are opened when the lists are built, so a table, policy
//     server setting or restriction argument that is wrong stops the
//     service at start-up, where Postfix starts and answers 451 4.3.5 at
//     run time. A table named only inside an access table's result (which
//     Postfix also refuses) answers 451 4.3.5 with a warning.
//   - A restriction argument that is missing (reject_rbl_client without a
//     domain) is a start-up error; Postfix warns at run time and skips it.
//   - check_sasl_access's reply class is "SASL login name".
//   - Postfix's smtpd_check test program resolves addresses with a stub;
//     moat uses the real address classes (internal/resolve), so a
//     virtual_alias_domains lookup failure is reported under that name.
//
// smtpd uses Lists as its smtpd.Policy. The smtpd-check test driver uses
// NewStandalone and a Session per script, as Postfix's smtpd_check does.
package restrict
