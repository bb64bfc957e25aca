package smtp

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/delivery/smtp/smtpsink"
	"moat/internal/queue"
	"moat/internal/testutil/dnsserver"
	"moat/internal/tlsconf/tlsconftest"

	mdns "github.com/miekg/dns"
)

// daneWorld: a second moat at 127.0.0.25 with a certificate for
// mx.dane.test and at 127.0.0.27 for mx.ta.test (both signed by a test
// CA, the CA sent in the chain), one without STARTTLS at 127.0.0.26, and
// a DNS server whose signed zones carry TLSA records for them.
type daneWorld struct {
	port, dns   string
	srv         *dnsserver.Server
	peer, ta    *tlsPeer
	plain       *tlsPeer
	cert, cert2 *tlsconftest.Cert
}

// withChain writes c's certificate followed by the CA's, so the server
// sends the DANE-TA anchor (RFC 7671 section 5.2.2).
func withChain(t *testing.T, c, ca *tlsconftest.Cert) *tlsconftest.Cert {
	t.Helper()
	cp := *c
	cp.CertFile = filepath.Join(t.TempDir(), "chain.pem")
	if err := os.WriteFile(cp.CertFile, append(append([]byte(nil), c.CertPEM...), ca.CertPEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	return &cp
}

func spkiSHA256(c *tlsconftest.Cert) string {
	d := sha256.Sum256(c.Cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(d[:])
}

func newDANEWorld(t *testing.T) *daneWorld {
	t.Helper()
	dir := t.TempDir()
	ca := tlsconftest.New(t, dir, "ca", "DANE CA", tlsconftest.ECDSA, nil, true)
	w := &daneWorld{}
	w.cert = tlsconftest.New(t, dir, "mx", "mx.dane.test", tlsconftest.ECDSA, ca, false)
	w.cert2 = tlsconftest.New(t, dir, "ta", "mx.ta.test", tlsconftest.RSA, ca, false)
	w.port = smtpsink.FreePort(t, "127.0.0.25", "127.0.0.26", "127.0.0.27")
	w.peer = startPeer(t, "127.0.0.25", w.port, withChain(t, w.cert, ca))
	w.plain = startPeer(t, "127.0.0.26", w.port, nil)
	w.ta = startPeer(t, "127.0.0.27", w.port, withChain(t, w.cert2, ca))
	caDigest := sha256.Sum256(ca.Cert.Raw)
	tlsa := func(host, rdata string) string { return "_" + w.port + "._tcp." + host + ". IN TLSA " + rdata }
	w.srv = dnsserver.Start(t,
		"dane.test. IN MX 10 mx.dane.test.",
		"mx.dane.test. IN A 127.0.0.25",
		tlsa("mx.dane.test", "3 1 1 "+spkiSHA256(w.cert)),
		"bad.test. IN MX 10 mx.bad.test.",
		"mx.bad.test. IN A 127.0.0.25",
		tlsa("mx.bad.test", "3 1 1 "+strings.Repeat("ab", 32)),
		"ta.test. IN MX 10 mx.ta.test.",
		"mx.ta.test. IN A 127.0.0.27",
		tlsa("mx.ta.test", "2 0 1 "+hex.EncodeToString(caDigest[:])),
		// mx.wrongname.test serves mx.dane.test's certificate.
		"wrongname.test. IN MX 10 mx.wrongname.test.",
		"mx.wrongname.test. IN A 127.0.0.25",
		tlsa("mx.wrongname.test", "2 0 1 "+hex.EncodeToString(caDigest[:])),
		"plain.test. IN MX 10 mx.plain.test.",
		"mx.plain.test. IN A 127.0.0.26",
		tlsa("mx.plain.test", "3 1 1 "+spkiSHA256(w.cert)),
		"sf.test. IN MX 10 mx.sf.test.",
		"mx.sf.test. IN A 127.0.0.25",
		"unusable.test. IN MX 10 mx.unusable.test.",
		"mx.unusable.test. IN A 127.0.0.25",
		tlsa("mx.unusable.test", "1 1 1 "+spkiSHA256(w.cert)),
		"notlsa.test. IN MX 10 mx.notlsa.test.",
		"mx.notlsa.test. IN A 127.0.0.25",
		// insecure.test is not signed, though its host has TLSA records.
		"insecure.test. IN MX 10 mx.insecure.test.",
		"mx.insecure.test. IN A 127.0.0.25",
		tlsa("mx.insecure.test", "3 1 1 "+strings.Repeat("ab", 32)),
		// An insecure MX answer naming a host with secure TLSA records.
		"insecmx.test. IN MX 10 mx.dane.test.",
		// The better MX fails DANE; the next one passes.
		"two.test. IN MX 10 mx.bad.test.",
		"two.test. IN MX 20 mx.dane.test.",
	)
	w.srv.Secure("two.test", "dane.test", "bad.test", "ta.test", "wrongname.test", "plain.test", "sf.test", "unusable.test", "notlsa.test")
	w.srv.Fail("_"+w.port+"._tcp.mx.sf.test", mdns.RcodeServerFailure)
	w.dns = w.srv.Addr()
	return w
}

func (w *daneWorld) agent(t *testing.T, level string, more ...string) (*Agent, func() string) {
	o := map[string]string{"smtp_tls_loglevel": "1", "smtp_tls_security_level": level, "smtp_dns_support_level": "dnssec"}
	for i := 0; i+1 < len(more); i += 2 {
		o[more[i]] = more[i+1]
	}
	a, ls := newAgent(t, w.dns, w.port, o)
	return a, func() string { return logLines(ls) }
}

// RFC 7672 with the trusted resolver's AD bit: DANE-EE and DANE-TA
// records authenticate the server (Verified); a record that matches
// nothing, a DANE-TA chain with another name, a server without STARTTLS
// and a failed TLSA lookup defer with nothing sent; insecure or missing
// TLSA records fall back to may (dane) or defer (dane-only); unusable
// ones make dane encrypt.
func TestDANE(t *testing.T) {
	w := newDANEWorld(t)
	rel := func(host, addr string) string { return relayOf(host, addr, w.port) }
	a, logs := w.agent(t, "dane")

	checkResult(t, deliver(t, a, request("dane.test", msg, "a@dane.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", rel("mx.dane.test", "127.0.0.25"))
	if !logHas(logs, "Verified TLS connection established to "+rel("mx.dane.test", "127.0.0.25")+": TLSv1.3") {
		t.Errorf("DANE-EE log:\n%s", logs())
	}
	checkResult(t, deliver(t, a, request("ta.test", msg, "a@ta.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", rel("mx.ta.test", "127.0.0.27"))
	if !logHas(logs, "Verified TLS connection established to "+rel("mx.ta.test", "127.0.0.27")) {
		t.Errorf("DANE-TA log:\n%s", logs())
	}
	n, np := w.peer.count(), w.plain.count()

	checkResult(t, deliver(t, a, request("bad.test", msg, "a@bad.test"))[0], queue.RcptDeferred, "4.7.5", "Server certificate not trusted", rel("mx.bad.test", "127.0.0.25"))
	if !logHas(logs, "server certificate verification failed for "+rel("mx.bad.test", "127.0.0.25")+": no TLSA record matches") {
		t.Errorf("DANE failure log:\n%s", logs())
	}
	checkResult(t, deliver(t, a, request("wrongname.test", msg, "a@wrongname.test"))[0], queue.RcptDeferred, "4.7.5", "Server certificate not trusted", rel("mx.wrongname.test", "127.0.0.25"))
	if !logHas(logs, "server certificate verification failed for "+rel("mx.wrongname.test", "127.0.0.25")+": subject name mismatch") {
		t.Errorf("DANE-TA name log:\n%s", logs())
	}
	if w.peer.count() != n {
		t.Fatalf("mail sent despite a DANE failure")
	}
	checkResult(t, deliver(t, a, request("two.test", msg, "a@two.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", rel("mx.dane.test", "127.0.0.25"))
	n = w.peer.count()
	checkResult(t, deliver(t, a, request("plain.test", msg, "a@plain.test"))[0], queue.RcptDeferred, "4.7.4",
		"TLS is required, but was not offered by host mx.plain.test[127.0.0.26]", rel("mx.plain.test", "127.0.0.26"))
	checkResult(t, deliver(t, a, request("sf.test", msg, "a@sf.test"))[0], queue.RcptDeferred, "4.7.5", "TLSA lookup error for mx.sf.test:"+w.port, "none")
	if w.peer.count() != n || w.plain.count() != np {
		t.Fatalf("mail sent despite a DANE failure")
	}

	// Insecure zone, no TLSA records: may (the certificate is not checked
	// against the roots, so Untrusted).
	checkResult(t, deliver(t, a, request("insecure.test", msg, "a@insecure.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", rel("mx.insecure.test", "127.0.0.25"))
	if !logHas(logs, "Untrusted TLS connection established to "+rel("mx.insecure.test", "127.0.0.25")) {
		t.Errorf("insecure log:\n%s", logs())
	}
	checkResult(t, deliver(t, a, request("notlsa.test", msg, "a@notlsa.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", rel("mx.notlsa.test", "127.0.0.25"))
	// An insecure MX lookup: no DANE even though the host has secure
	// TLSA records (RFC 7672 section 2.2.1; Postfix's
	// smtp_tls_dane_insecure_mx_policy is not implemented).
	checkResult(t, deliver(t, a, request("insecmx.test", msg, "a@insecmx.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", rel("mx.dane.test", "127.0.0.25"))
	if !logHas(logs, "Untrusted TLS connection established to "+rel("mx.dane.test", "127.0.0.25")) {
		t.Errorf("insecure MX log:\n%s", logs())
	}
	// Unusable records: encrypt, so a server without STARTTLS would wait.
	checkResult(t, deliver(t, a, request("unusable.test", msg, "a@unusable.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", rel("mx.unusable.test", "127.0.0.25"))

	// dane-only: whatever is not DANE waits.
	a, _ = w.agent(t, "dane-only")
	checkResult(t, deliver(t, a, request("dane.test", msg, "b@dane.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", rel("mx.dane.test", "127.0.0.25"))
	n = w.peer.count()
	checkResult(t, deliver(t, a, request("insecure.test", msg, "b@insecure.test"))[0], queue.RcptDeferred, "4.7.5", "non DNSSEC destination", "none")
	checkResult(t, deliver(t, a, request("notlsa.test", msg, "b@notlsa.test"))[0], queue.RcptDeferred, "4.7.5", "no TLSA records found", "none")
	checkResult(t, deliver(t, a, request("insecmx.test", msg, "b@insecmx.test"))[0], queue.RcptDeferred, "4.7.5", "non DNSSEC destination", "none")
	checkResult(t, deliver(t, a, request("unusable.test", msg, "b@unusable.test"))[0], queue.RcptDeferred, "4.7.5", "TLSA records unusable", "none")
	if w.peer.count() != n {
		t.Errorf("dane-only sent mail without DANE")
	}

	// Without smtp_dns_support_level = dnssec: dane is may with
	// Postfix's warning, dane-only a configuration problem.
	a, logs = w.agent(t, "dane", "smtp_dns_support_level", "")
	checkResult(t, deliver(t, a, request("bad.test", msg, "c@bad.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", rel("mx.bad.test", "127.0.0.25"))
	if !logHas(logs, "warning: bad.test: dane configured with dnssec lookups disabled") {
		t.Errorf("no-dnssec log:\n%s", logs())
	}
	a, _ = w.agent(t, "dane-only", "smtp_dns_support_level", "enabled")
	checkResult(t, deliver(t, a, request("dane.test", msg, "c@dane.test"))[0], queue.RcptDeferred, "4.7.5", "client TLS configuration problem", "none")
}

// smtp_tls_policy_maps selects dane per destination.
func TestDANEPolicyMap(t *testing.T) {
	w := newDANEWorld(t)
	pm := filepath.Join(t.TempDir(), "tls_policy")
	if err := os.WriteFile(pm, []byte("bad.test dane-only\n.test may\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, _ := w.agent(t, "none", "smtp_tls_policy_maps", "texthash:"+pm)
	checkResult(t, deliver(t, a, request("bad.test", msg, "a@bad.test"))[0], queue.RcptDeferred, "4.7.5", "Server certificate not trusted", relayOf("mx.bad.test", "127.0.0.25", w.port))
	checkResult(t, deliver(t, a, request("dane.test", msg, "a@dane.test"))[0], queue.RcptDelivered, "2.0.0", "250 *", relayOf("mx.dane.test", "127.0.0.25", w.port))
}
