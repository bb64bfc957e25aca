package test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Outbound SMTP AUTH (issue 8 item 3): a moat instance relays through a
// second one as its smarthost (relayhost = [127.0.0.1]:port), which runs
// the built-in SASL backend with authFixture's users and offers AUTH in
// clear (smtpd_tls_auth_only = no) for the plaintext mechanisms. The
// client does not use STARTTLS here (smtp_tls_security_level = none), so
// smtp_sasl_security_options is the one that applies.

// smarthost starts the AUTH-offering second instance; mail for dest.test
// is local to it.
func smarthost(t *testing.T, fix string) *server {
	t.Helper()
	return startServer(t, authMainCF(fix, "moat", "")+
		"myhostname = b.moat.test\nmydestination = b.moat.test, dest.test\n"+
		"smtpd_sasl_security_options = noanonymous\nsmtpd_tls_auth_only = no\n")
}

// authClient starts the relaying instance with extra smtp_sasl_* lines.
func authClient(t *testing.T, b *server, extra string) *server {
	t.Helper()
	return startServer(t, "mynetworks = 127.0.0.0/8\ndns_servers = 127.0.0.1:1\n"+
		fmt.Sprintf("relayhost = [127.0.0.1]:%d\n", b.port)+
		"smtp_tls_security_level = none\nsmtp_sasl_auth_enable = yes\n"+extra)
}

// TestOutboundAuthPlain: the next hop's login (looked up as
// "[127.0.0.1]:port") delivers; with smtp_sender_dependent_authentication
// a sender's own login wins; a wrong password is a 535, which defers
// (smtp_sasl_auth_soft_bounce = yes) with Postfix's text.
func TestOutboundAuthPlain(t *testing.T) {
	t.Parallel()
	fix := authFixture(t)
	b := smarthost(t, fix)
	a := authClient(t, b, "smtp_sasl_security_options = noanonymous\n"+
		"smtp_sasl_mechanism_filter = plain, login\n"+
		"smtp_sender_dependent_authentication = yes\n"+
		fmt.Sprintf("smtp_sasl_password_maps = inline:{ [127.0.0.1]:%d=alice@moat.test:alice-pw, "+
			"bob@moat.test=bob@moat.test:bob-pw, @wrong.test=bob@moat.test:not-bobs }\n", b.port))
	relay := regexp.QuoteMeta(fmt.Sprintf("127.0.0.1[127.0.0.1]:%d", b.port))

	id := sendVia(t, a, "user@moat.test", "user@dest.test", "as alice")
	a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@dest\.test>, relay=`+relay+`, .*dsn=2\.0\.0, status=sent`, 30*time.Second)
	b.waitLog(`client=\S+, sasl_method=PLAIN, sasl_username=alice@moat\.test`, 10*time.Second)

	id = sendVia(t, a, "bob@moat.test", "user@dest.test", "as bob")
	a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@dest\.test>, relay=`+relay+`, .*dsn=2\.0\.0, status=sent`, 30*time.Second)
	b.waitLog(`client=\S+, sasl_method=PLAIN, sasl_username=bob@moat\.test`, 10*time.Second)
	b.waitDelivered("user", 2, 30*time.Second)

	id = sendVia(t, a, "someone@wrong.test", "user@dest.test", "wrong password")
	a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@dest\.test>, relay=`+relay+`, .*dsn=4\.7\.8, status=deferred \(SASL authentication failed; server 127\.0\.0\.1\[127\.0\.0\.1\] said: 535 5\.7\.8 [^)]*authentication failed`, 30*time.Second)
	b.waitLog(`warning: \S+\[127\.0\.0\.1\]: SASL PLAIN authentication failed: .*sasl_username=bob@moat\.test`, 10*time.Second)
}

// TestOutboundAuthSecurityOptions: with the default
// smtp_sasl_security_options (noplaintext, noanonymous, seed 002) and only
// PLAIN and LOGIN let through the mechanism filter, no credentials cross
// the unencrypted connection: the mail is deferred with Postfix's reason
// and the smarthost never sees an AUTH. Without the filter, CRAM-MD5
// (which keeps the password off the wire) is chosen and delivers.
func TestOutboundAuthSecurityOptions(t *testing.T) {
	t.Parallel()
	fix := authFixture(t)
	b := smarthost(t, fix)
	maps := fmt.Sprintf("smtp_sasl_password_maps = inline:{ [127.0.0.1]:%d=alice@moat.test:alice-pw }\n", b.port)
	relay := regexp.QuoteMeta(fmt.Sprintf("127.0.0.1[127.0.0.1]:%d", b.port))

	refused := authClient(t, b, maps+"smtp_sasl_mechanism_filter = plain, login\n")
	id := sendVia(t, refused, "user@moat.test", "user@dest.test", "must not log in")
	refused.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@dest\.test>, relay=`+relay+`, .*dsn=4\.7\.0, status=deferred \(SASL authentication failed; cannot authenticate to server 127\.0\.0\.1\[127\.0\.0\.1\]: no mechanism available\)`, 30*time.Second)
	if l := b.log(); strings.Contains(l, "sasl_method=") || strings.Contains(l, "authentication failed") {
		t.Errorf("smarthost saw an AUTH:\n%s", l)
	}

	cram := authClient(t, b, maps)
	id = sendVia(t, cram, "user@moat.test", "user@dest.test", "CRAM-MD5")
	cram.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@dest\.test>, relay=`+relay+`, .*dsn=2\.0\.0, status=sent`, 30*time.Second)
	b.waitLog(`client=\S+, sasl_method=CRAM-MD5, sasl_username=alice@moat\.test`, 10*time.Second)

	// Inside TLS smtp_sasl_tls_security_options applies: PLAIN, which
	// the default options refuse in clear, goes over the encrypted
	// channel after STARTTLS and its second EHLO.
	tlsc := authClient(t, b, maps+"smtp_sasl_mechanism_filter = plain, login\n"+
		"smtp_tls_security_level = encrypt\nsmtp_sasl_tls_security_options = noanonymous\nsmtp_tls_loglevel = 1\n")
	id = sendVia(t, tlsc, "user@moat.test", "user@dest.test", "PLAIN inside TLS")
	tlsc.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@dest\.test>, relay=`+relay+`, .*dsn=2\.0\.0, status=sent`, 30*time.Second)
	b.waitLog(`client=\S+, sasl_method=PLAIN, sasl_username=alice@moat\.test`, 10*time.Second)
	tlsc.waitLog(`postfix/smtp\[\d+\]: Untrusted TLS connection established to `+relay+`: TLSv1\.3`, 5*time.Second)

	// A filter that leaves none of the server's mechanisms: no AUTH at
	// all (Postfix's warning), and the smarthost, which delivers
	// dest.test itself, takes the mail anyway.
	none := authClient(t, b, maps+"smtp_sasl_mechanism_filter = gssapi\n")
	id = sendVia(t, none, "user@moat.test", "user@dest.test", "no AUTH")
	none.waitLog(`postfix/smtp\[\d+\]: warning: `+id+`: 127\.0\.0\.1\[127\.0\.0\.1\] offered no supported AUTH mechanisms: '[^']*PLAIN[^']*'`, 30*time.Second)
	none.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@dest\.test>, relay=`+relay+`, .*dsn=2\.0\.0, status=sent`, 30*time.Second)
}
