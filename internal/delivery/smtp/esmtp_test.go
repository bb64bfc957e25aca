package smtp

import (
	"strings"
	"testing"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/queue"
	"moat/internal/smtp"
)

// A server that does not speak ESMTP gets HELO and plain commands.
func TestHELOFallback(t *testing.T) {
	a, s, port := oneSink(t, "old.test", "127.0.0.14", nil, "-e")
	req := request("old.test", msg, "a@old.test")
	req.Envelope.Flags |= queue.Flag8BitMIME
	checkResult(t, deliver(t, a, req)[0], queue.RcptDelivered, "2.0.0", "250 *", relayOf("old.test", "127.0.0.14", port))
	m := s.Messages()
	if len(m) != 1 || !strings.Contains(m[0], "X-Client-Proto: SMTP\n") || !strings.Contains(m[0], "X-Mail-Args: <sender@example.org>\n") {
		t.Errorf("sink got %q", m)
	}
}

// RFC 3461 parameters from the queue file go to a server that offers
// DSN.
func TestDSNPassThrough(t *testing.T) {
	a, s, _ := oneSink(t, "dsn.test", "127.0.0.15", nil)
	req := request("dsn.test", msg, "a@dsn.test")
	req.Envelope.Ret, req.Envelope.EnvID = "HDRS", "id+1"
	req.Recipients[0].Notify = uint8(smtp.NotifySuccess | smtp.NotifyFailure)
	req.Recipients[0].ORCPT = "rfc822;orig@dsn.test"
	deliver(t, a, req)
	m := s.Messages()
	if len(m) != 1 || !strings.Contains(m[0], "X-Mail-Args: <sender@example.org> RET=HDRS ENVID=id+2B1\n") ||
		!strings.Contains(m[0], "X-Rcpt-Args: <a@dsn.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig@dsn.test\n") {
		t.Errorf("sink got %q", m)
	}
}

// A message that needs SMTPUTF8 (a UTF-8 address) bounces at a server
// without it, with Postfix's text.
func TestSMTPUTF8Required(t *testing.T) {
	a, s, port := oneSink(t, "utf.test", "127.0.0.16", nil)
	req := request("utf.test", msg, "j\xc3\xb6rg@utf.test")
	req.Envelope.Flags |= queue.FlagSMTPUTF8
	checkResult(t, deliver(t, a, req)[0], queue.RcptBounced, "5.6.7",
		"SMTPUTF8 is required, but was not offered by host utf.test[127.0.0.16]", relayOf("utf.test", "127.0.0.16", port))
	if len(s.Messages()) != 0 {
		t.Error("message sent")
	}
}

// Settings that ask for what this agent does not do yet (fingerprint,
// wrapper mode) stop the agent from starting rather than letting mail
// out with less protection.
func TestUnsupportedRefused(t *testing.T) {
	for k, v := range map[string]string{"smtp_dns_support_level": "bogus",
		"smtp_tls_wrappermode": "yes"} {
		o := map[string]string{"myhostname": "client.example", "dns_servers": "127.0.0.1:1", k: v}
		if _, err := New(delivery.Deps{Config: config.Empty(t.TempDir()).WithOverrides(o), Service: "smtp"}); err == nil {
			t.Errorf("%s = %s accepted", k, v)
		}
	}
	for _, v := range []string{"fingerprint", "bogus"} {
		o := map[string]string{"myhostname": "client.example", "dns_servers": "127.0.0.1:1", "smtp_tls_security_level": v}
		if _, err := New(delivery.Deps{Config: config.Empty(t.TempDir()).WithOverrides(o), Service: "smtp"}); err == nil {
			t.Errorf("smtp_tls_security_level = %s accepted", v)
		}
	}
}
