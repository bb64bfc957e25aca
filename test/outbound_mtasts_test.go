package test

import (
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/testutil/dnsserver"
	"moat/internal/tlsconf/tlsconftest"
)

// TestOutboundMTASTS: with smtp_mta_sts = yes, moat's smtp(8) fetches the
// MTA-STS policies (RFC 8461) of sts.test and unlisted.test over HTTPS
// from a policy server on port 443 of a loopback address, both found
// through the loopback DNS server. sts.test's enforce policy lists its MX
// host: the message goes out over a Verified TLS session although
// smtp_tls_security_level is none, and the policy is kept under
// $data_directory/mta-sts by the unprivileged agent. unlisted.test's
// enforce policy does not list the same MX host: deferred 4.7.5, nothing
// sent.
func TestOutboundMTASTS(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	certDir, ca := testCA(t, "Moat MTA-STS Test CA")
	mx := tlsconftest.New(t, certDir, "mx", "mx.sts.test", tlsconftest.ECDSA, ca, false)
	b := startServer(t, "myhostname = b.moat.test\nmydestination = b.moat.test, sts.test, unlisted.test\n"+
		"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = "+mx.CertFile+"\nsmtpd_tls_key_file = "+mx.KeyFile+"\n")
	bp := fmt.Sprint(b.port)

	web := startPolicyWeb(t, certDir, ca, map[string]string{
		"sts.test":      "version: STSv1\r\nmode: enforce\r\nmx: *.sts.test\r\nmax_age: 86400\r\n",
		"unlisted.test": "version: STSv1\r\nmode: enforce\r\nmx: mail.elsewhere.test\r\nmax_age: 86400\r\n",
	})
	ns := dnsserver.Start(t,
		"sts.test. IN MX 10 mx.sts.test.", "unlisted.test. IN MX 10 mx.sts.test.",
		"mx.sts.test. IN A 127.0.0.1",
		`_mta-sts.sts.test. IN TXT "v=STSv1; id=1"`, "mta-sts.sts.test. IN A "+web,
		`_mta-sts.unlisted.test. IN TXT "v=STSv1; id=1"`, "mta-sts.unlisted.test. IN A "+web)
	// a's own address for the MX self-check is 127.0.0.2, so that b on
	// 127.0.0.1 is not "myself".
	a := startServer(t, "mynetworks = 127.0.0.0/8\ndns_servers = "+ns.Addr()+"\ninet_interfaces = 127.0.0.2\n"+
		"smtp_tcp_port = "+bp+"\nsmtp_tls_security_level = none\nsmtp_tls_loglevel = 1\nsmtp_tls_CAfile = "+ca.CertFile+"\n"+
		"smtp_mta_sts = yes\nsmtp_mta_sts_CAfile = "+ca.CertFile+"\n")

	relay := regexp.QuoteMeta("mx.sts.test[127.0.0.1]:" + bp)
	id := sendVia(t, a, "user@moat.test", "user@sts.test", "over MTA-STS")
	a.waitLog(`postfix/smtp\[\d+\]: Verified TLS connection established to `+relay+`: TLSv1\.3`, 30*time.Second)
	a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@sts\.test>, relay=`+relay+`, .*dsn=2\.0\.0, status=sent`, 30*time.Second)

	id = sendVia(t, a, "user@moat.test", "user@unlisted.test", "must not arrive")
	a.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<user@unlisted\.test>, relay=none, .*dsn=4\.7\.5, status=deferred \(MTA-STS policy for unlisted\.test does not list MX host mx\.sts\.test\)`, 30*time.Second)

	b.waitDelivered("user", 1, 30*time.Second)
	if l := b.log(); strings.Contains(l, "must not arrive") || b.delivered("user") != 1 {
		t.Errorf("b delivered %d messages; log:\n%s", b.delivered("user"), l)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "lib", "mta-sts")); err != nil {
		t.Errorf("policy cache: %v\n%s", err, a.log())
	}
}

// startPolicyWeb serves policies (domain → policy text) at
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt on port 443 of a random
// 127.0.0.0/8 address (RFC 8461 section 3.3 allows no other port; the
// tests run as root), with a certificate per policy host signed by ca,
// and returns the address.
func startPolicyWeb(t *testing.T, dir string, ca *tlsconftest.Cert, policies map[string]string) string {
	t.Helper()
	certs := map[string]*tls.Certificate{}
	for d := range policies {
		host := "mta-sts." + d
		c := tlsconftest.New(t, dir, host, host, tlsconftest.ECDSA, ca, false)
		pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		certs[host] = &pair
	}
	var ln net.Listener
	var err error
	for range 20 {
		addr := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(100), rand.IntN(250), 1+rand.IntN(250))
		if ln, err = net.Listen("tcp", addr+":443"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no loopback address with a free port 443: %v", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := strings.Cut(r.Host, ":")
			p, ok := policies[strings.TrimPrefix(host, "mta-sts.")]
			if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, p)
		}),
		TLSConfig: &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := certs[h.ServerName]; ok {
				return c, nil
			}
			return nil, fmt.Errorf("no certificate for %q", h.ServerName)
		}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).IP.String()
}
