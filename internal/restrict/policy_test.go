package restrict

import (
	"net"
	"testing"

	"moat/internal/testutil/policyserver"
)

// TestPolicyService: check_policy_service's answer is an access(5)
// action, with the request carrying the session's attributes.
func TestPolicyService(t *testing.T) {
	p := policyserver.Start(t, func(a map[string]string) string {
		switch a["recipient"] {
		case "grey@x.test":
			return "DEFER_IF_PERMIT Greylisted, see http://x"
		case "bad@x.test":
			return "550 5.1.1 no such user"
		case "hold@x.test":
			return "HOLD"
		case "nested@x.test":
			return "permit_mynetworks, reject"
		}
		return "DUNNO"
	})
	h := newHarness(t, "smtpd_recipient_restrictions = check_policy_service inet:"+p.Addr()+", permit\n", nil)
	h.helo("client.example")
	h.mail("s@y.test")
	expect(t, "dunno", h.rcpt("ok@x.test"), "OK")
	req := p.Last()
	for k, want := range map[string]string{"request": "smtpd_access_policy", "protocol_state": "RCPT", "sender": "s@y.test",
		"recipient": "ok@x.test", "client_address": "127.0.0.1", "client_name": "localhost", "helo_name": "client.example"} {
		if req[k] != want {
			t.Errorf("request %s = %q, want %q (%v)", k, req[k], want, req)
		}
	}
	expect(t, "greylist", h.rcpt("grey@x.test"), "450 4.7.1 <grey@x.test>: Recipient address rejected: Greylisted, see http://x")
	expect(t, "reject", h.rcpt("bad@x.test"), "550 5.1.1 <bad@x.test>: Recipient address rejected: no such user")
	expect(t, "nested", h.rcpt("nested@x.test"), "OK")
	h.client("far.example", "198.51.100.9", 2)
	expect(t, "nested outsider", h.rcpt("nested@x.test"), "554 5.7.1 <nested@x.test>: Recipient address rejected: Access denied")
}

// TestPolicyUnreachable: a server that cannot be reached gives
// smtpd_policy_service_default_action (451 4.3.5 by default), never a
// permit.
func TestPolicyUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := newHarness(t, "smtpd_policy_service_try_limit = 1\nsmtpd_recipient_restrictions = check_policy_service inet:"+addr+", permit\n", nil)
	h.mail("s@y.test")
	expect(t, "unreachable", h.rcpt("ok@x.test"), "451 4.3.5 <ok@x.test>: Recipient address rejected: Server configuration problem")
}
