package test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/testutil/dnsserver"
	"moat/internal/tlsconf/tlsconftest"
)

// TestOutboundDANE: moat's smtp(8) at smtp_tls_security_level = dane with
// smtp_dns_support_level = dnssec, relaying to a second moat whose
// certificate (for *.dane.test, signed by a test CA sent in its chain)
// is named by TLSA records in a zone the loopback DNS server marks
// secure (the AD bit of a trusted resolver). (a) TLSA 3 1 1 of its key:
// delivered, "Verified"; (b) a wrong digest: deferred 4.7.5 with
// Postfix's verification failure log, nothing arrives; (c) DANE-TA
// 2 0 1 of the CA with a matching name: delivered, "Verified"; (d) an
// insecure zone (no AD): delivered at may, "Untrusted".
func TestOutboundDANE(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	certDir, ca := testCA(t, "Moat DANE Test CA")
	bc := tlsconftest.New(t, certDir, "b", "*.dane.test", tlsconftest.ECDSA, ca, false)
	chain := filepath.Join(certDir, "b-chain.crt")
	if err := os.WriteFile(chain, append(append([]byte(nil), bc.CertPEM...), ca.CertPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startServer(t, "myhostname = b.moat.test\nmydestination = b.moat.test, ee.test, bad.test, ta.test, ins.test\n"+
		"mynetworks = 127.0.0.0/8\nsmtpd_tls_security_level = may\n"+
		"smtpd_tls_cert_file = "+chain+"\nsmtpd_tls_key_file = "+bc.KeyFile+"\n")
	bp := fmt.Sprint(b.port)
	spki := sha256.Sum256(bc.Cert.RawSubjectPublicKeyInfo)
	caDigest := sha256.Sum256(ca.Cert.Raw)
	tlsa := func(host, rdata string) string { return "_" + bp + "._tcp." + host + ". IN TLSA " + rdata }
	ns := dnsserver.Start(t,
		"ee.dane.test. IN A 127.0.0.1", tlsa("ee.dane.test", "3 1 1 "+hex.EncodeToString(spki[:])),
		"bad.dane.test. IN A 127.0.0.1", tlsa("bad.dane.test", "3 1 1 "+strings.Repeat("5a", 32)),
		"ta.dane.test. IN A 127.0.0.1", tlsa("ta.dane.test", "2 0 1 "+hex.EncodeToString(caDigest[:])),
		"ins.insecure.test. IN A 127.0.0.1", tlsa("ins.insecure.test", "3 1 1 "+strings.Repeat("5a", 32)),
	)
	ns.Secure("dane.test")
	a := startServer(t, "mynetworks = 127.0.0.0/8\ndns_servers = "+ns.Addr()+"\n"+
		"smtp_dns_support_level = dnssec\nsmtp_tls_security_level = dane\nsmtp_tls_loglevel = 1\n"+
		"transport_maps = inline:{ ee.test=smtp:[ee.dane.test]:"+bp+", bad.test=smtp:[bad.dane.test]:"+bp+
		", ta.test=smtp:[ta.dane.test]:"+bp+", ins.test=smtp:[ins.insecure.test]:"+bp+" }\n")

	relay := func(host string) string { return regexp.QuoteMeta(host + "[127.0.0.1]:" + bp) }
	sent := func(id, rcpt, host string) {
		t.Helper()
		a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<`+regexp.QuoteMeta(rcpt)+`>, relay=`+relay(host)+`, .*dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as \S+\)`, 30*time.Second)
	}

	// (a) DANE-EE.
	id := sendVia(t, a, "user@moat.test", "user@ee.test", "DANE-EE")
	a.waitLog(`postfix/smtp\[\d+\]: Verified TLS connection established to `+relay("ee.dane.test")+`: TLSv1\.3 with cipher TLS_\S+ \(\d+/\d+ bits\)`, 30*time.Second)
	sent(id, "user@ee.test", "ee.dane.test")

	// (b) a digest that matches nothing: deferred, never sent.
	id = sendVia(t, a, "user@moat.test", "user@bad.test", "must not arrive")
	a.waitLog(`postfix/smtp\[\d+\]: server certificate verification failed for `+relay("bad.dane.test")+`: no TLSA record matches the certificate chain`, 30*time.Second)
	a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@bad\.test>, relay=`+relay("bad.dane.test")+`, .*dsn=4\.7\.5, status=deferred \(Server certificate not trusted\)`, 30*time.Second)

	// (c) DANE-TA: the CA is the anchor, the name matches.
	id = sendVia(t, a, "user@moat.test", "user@ta.test", "DANE-TA")
	a.waitLog(`postfix/smtp\[\d+\]: Verified TLS connection established to `+relay("ta.dane.test"), 30*time.Second)
	sent(id, "user@ta.test", "ta.dane.test")

	// (d) insecure zone: no DANE, opportunistic TLS.
	id = sendVia(t, a, "user@moat.test", "user@ins.test", "insecure")
	a.waitLog(`postfix/smtp\[\d+\]: Untrusted TLS connection established to `+relay("ins.insecure.test"), 30*time.Second)
	sent(id, "user@ins.test", "ins.insecure.test")

	b.waitDelivered("user", 3, 30*time.Second)
	if l := b.log(); strings.Contains(l, "must not arrive") {
		t.Errorf("the deferred message reached the server:\n%s", l)
	}
	if n := b.delivered("user"); n != 3 {
		t.Errorf("b delivered %d messages, want 3", n)
	}
}
