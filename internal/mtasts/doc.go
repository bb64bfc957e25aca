// Package mtasts is moat's MTA-STS policy source (RFC 8461): for a next-hop
// domain it finds the policy the domain publishes, keeps it, and tells the
// smtp agent which MX hosts it may use and whether it must insist on TLS with
// a certificate valid for the MX host name. Postfix has no MTA-STS of its own
// (it needs an external policy daemon such as postfix-mta-sts-resolver
// behind smtp_tls_policy_maps); moat builds it in, off unless
// smtp_mta_sts = yes.
//
// What it does:
//   - §3.1: the TXT record _mta-sts.DOMAIN; of the records that begin
//     "v=STSv1" exactly one must remain and parse, or the domain has no
//     policy (ParseTXT).
//   - §3.3: the policy from https://mta-sts.DOMAIN/.well-known/mta-sts.txt,
//     the host name resolved through moat's own resolver (internal/dns,
//     dns_servers), never the system's; the certificate checked against the
//     system roots or smtp_mta_sts_CAfile; redirects refused; a time limit
//     and a 64 KiB body limit; only "200" with media type text/plain.
//   - §3.2: the policy text (ParsePolicy): version, mode, mx patterns,
//     max_age; unknown keys ignored.
//   - §4.1: MX host matching, a leading "*." standing for exactly one label
//     (Policy.Match).
//   - §5.1: a policy is kept until max_age after it was fetched, in
//     memory and in one file per domain under smtp_mta_sts_cache_directory,
//     so a restart keeps it. A changed TXT id makes it fetch again; when the
//     TXT lookup or the fetch fails, an unexpired cached policy stays in
//     force, which is what stops an attacker who blocks DNS or HTTPS from
//     downgrading delivery to plaintext.
//
// How the smtp agent uses it (for a next-hop domain found through MX
// records, never for relayhost or "[host]" next hops, RFC 8461 §5): ask
// Source.Lookup for the domain's policy; with a nil policy deliver as
// before. With mode enforce (Policy.Enforce), skip each MX host for which
// Policy.Match is false, and require TLS with a certificate that chains to a
// trusted root and names the MX host (tlsconf level "secure" with the MX
// host name as the reference identity); a host that fails is treated like a
// failed "secure" host (defer, try the next). With mode testing, deliver as
// before and only log what enforce would have refused (§5).
//
// What it does not do: TLS reporting (RFC 8460, TLSRPT: the _smtp._tls
// record and aggregate reports); proactive refresh of policies before they
// expire, which the RFC recommends (here the next delivery after expiry
// refreshes it); choosing between DANE and MTA-STS for a domain that has
// both, which is the agent's choice since it holds both.
package mtasts
