package test

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"moat/internal/testutil/dnsserver"
	"moat/internal/tlsconf/tlsconftest"
)

// TestOutboundTLS: moat's smtp(8) to a second moat offering STARTTLS
// with a certificate for b.moat.test signed by a test CA, and to a third
// without STARTTLS. Global level may with smtp_tls_policy_maps per next
// hop: verify with the right CA and name is "Verified" and delivered;
// verify under another name is deferred ("Server certificate not
// verified") and nothing arrives; encrypt to the server without STARTTLS
// is deferred ("TLS is required, but was not offered"), never sent in
// clear.
func TestOutboundTLS(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	certDir, ca := testCA(t, "Moat Test CA")
	bc := tlsconftest.New(t, certDir, "b", "b.moat.test", tlsconftest.ECDSA, ca, false)
	b := startServer(t, "myhostname = b.moat.test\nmydestination = b.moat.test, good.test, wrong.test\n"+
		"mynetworks = 127.0.0.0/8\nsmtpd_tls_security_level = may\n"+
		"smtpd_tls_cert_file = "+bc.CertFile+"\nsmtpd_tls_key_file = "+bc.KeyFile+"\n")
	c := startServer(t, "myhostname = c.moat.test\nmydestination = c.moat.test, plain.test\n"+
		"mynetworks = 127.0.0.0/8\nsmtpd_tls_security_level = none\n")
	ns := dnsserver.Start(t, "b.moat.test. IN A 127.0.0.1", "alias.moat.test. IN A 127.0.0.1", "c.moat.test. IN A 127.0.0.1")
	bp, cp := fmt.Sprint(b.port), fmt.Sprint(c.port)
	a := startServer(t, "mynetworks = 127.0.0.0/8\ndns_servers = "+ns.Addr()+"\n"+
		"smtp_tls_security_level = may\nsmtp_tls_loglevel = 1\nsmtp_tls_CAfile = "+ca.CertFile+"\n"+
		"transport_maps = inline:{ good.test=smtp:[b.moat.test]:"+bp+", wrong.test=smtp:[alias.moat.test]:"+bp+
		", plain.test=smtp:[c.moat.test]:"+cp+" }\n"+
		"smtp_tls_policy_maps = inline:{ [b.moat.test]:"+bp+"=verify, [alias.moat.test]:"+bp+"=verify, [c.moat.test]:"+cp+"=encrypt }\n")

	id := sendVia(t, a, "user@moat.test", "user@good.test", "over TLS")
	relay := regexp.QuoteMeta("b.moat.test[127.0.0.1]:" + bp)
	a.waitLog(`postfix/smtp\[\d+\]: Verified TLS connection established to `+relay+`: TLSv1\.3 with cipher TLS_\S+ \(\d+/\d+ bits\)`, 30*time.Second)
	a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@good\.test>, relay=`+relay+`, .*dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as \S+\)`, 30*time.Second)
	b.waitDelivered("user", 1, 30*time.Second)

	id = sendVia(t, a, "user@moat.test", "user@wrong.test", "must not arrive")
	relay = regexp.QuoteMeta("alias.moat.test[127.0.0.1]:" + bp)
	a.waitLog(`postfix/smtp\[\d+\]: Trusted TLS connection established to `+relay, 30*time.Second)
	a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@wrong\.test>, relay=`+relay+`, .*dsn=4\.7\.5, status=deferred \(Server certificate not verified\)`, 30*time.Second)

	id = sendVia(t, a, "user@moat.test", "user@plain.test", "must not go in clear")
	relay = regexp.QuoteMeta("c.moat.test[127.0.0.1]:" + cp)
	a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@plain\.test>, relay=`+relay+`, .*dsn=4\.7\.4, status=deferred \(TLS is required, but was not offered by host `+regexp.QuoteMeta("c.moat.test[127.0.0.1]")+`\)`, 30*time.Second)
	if n := c.delivered("user"); n != 0 {
		t.Errorf("the server without STARTTLS got %d messages", n)
	}
	if n := b.delivered("user"); n != 1 {
		t.Errorf("b delivered %d messages, want 1", n)
	}
}

// testCA makes a directory the servers' unprivileged children can read
// and a test CA (ECDSA) in it named cn, for certificates the test signs.
func testCA(t *testing.T, cn string) (string, *tlsconftest.Cert) {
	t.Helper()
	dir := t.TempDir()
	prepareDir(t, dir)
	return dir, tlsconftest.New(t, dir, "ca", cn, tlsconftest.ECDSA, nil, true)
}
