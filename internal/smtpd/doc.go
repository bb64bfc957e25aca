// Package smtpd is moat's SMTP server session (Postfix's smtpd(8)): one
// goroutine per connection runs RFC 5321 commands with the extensions of
// RFC 1870 (SIZE), RFC 2920 (PIPELINING), RFC 3030 (CHUNKING), RFC 3461 (DSN),
// RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8) and RFC 2034
// (ENHANCEDSTATUSCODES), streams each message through cleanup into the
// durable queue, and answers 250 only after the queue file is fsynced.
//
// Replies and log records use Postfix's wording (checked against the texts
// in Postfix 3.7.11's smtpd binary and postconf(5) for the 3.9 features), so
// clients, fail2ban filters and pflogsumm see what they see from Postfix.
//
// Deliberate differences from Postfix:
//   - VRFY, when enabled, always answers 252 (cannot verify, will try):
//     Postfix's 550 for an unknown user lets anyone harvest addresses.
//   - smtpd_forbid_unauth_pipelining follows RFC 2920 §3.1 literally:
//     without PIPELINING no command may have input behind it; with it,
//     EHLO, HELO, DATA, VRFY, EXPN, NOOP, QUIT, ETRN and HELP must end a
//     group; input before the greeting is found with a non-blocking
//     MSG_PEEK. The reply and record are Postfix 3.9's.
//   - A whole session is capped (smtpd_session_time_limit, moat's own,
//     default 3600s) on top of smtpd_timeout per read; the end is
//     "421 4.4.2 HOST Error: session time limit exceeded" and the record
//     "session time limit exceeded after CMD from CLIENT".
//   - A refused bare newline is logged as a reject record ("NOQUEUE: reject:
//     DATA from ...: 550 5.5.2 Error: bare <LF> received; from=<...> ...")
//     and the session is closed, in commands and in DATA/BDAT.
//   - BDAT errors found inside a message (size, bare newline) are answered
//     after LAST; every intermediate chunk gets 250. smtpd_data_restrictions
//     (StageData) also apply to the first BDAT, so CHUNKING is no way around
//     them.
//   - ETRN always answers "459 <domain>: service unavailable": there is no
//     fast-flush service yet.
//   - smtpd_forbidden_commands tables are asked about the upper-cased verb,
//     so a pattern written for lower case needs the (default) "i" flag.
//   - The "message-id=" record is logged by smtpd, from the Message-ID
//     header as received, not by cleanup after header_checks.
//   - Missing headers are added only with always_add_missing_headers;
//     local_header_rewrite_clients decides only header address rewriting.
//   - local_header_rewrite_clients is evaluated when the message starts,
//     and a table that fails there fails the message at the end of DATA
//     ("451 4.3.0 Error: queue file write error"); Postfix answers MAIL FROM
//     with "451 4.3.0 Temporary lookup error".
//   - The error count is reset when a message is queued, so
//     smtpd_soft_error_limit and the junk limit count errors "without
//     delivering mail" per transaction.
package smtpd
