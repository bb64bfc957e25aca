package restrict

import (
	"context"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"moat/internal/smtpd"
	"moat/internal/testutil"
)

// accessTable is Postfix's own smtpd_check_access test table, read as
// texthash: (no postmap step).
func accessTable(t *testing.T) string {
	return "texthash:" + filepath.Join(testutil.PostfixTests(t), "smtpd", "smtpd_check_access")
}

// TestAccessKeyOrder follows smtpd_acl.in/.ref: access(5) key order and
// DUNNO ending a search.
func TestAccessKeyOrder(t *testing.T) {
	tab := accessTable(t)
	h := newHarness(t, "smtpd_client_restrictions = "+tab+"\nsmtpd_helo_restrictions = "+tab+
		"\nsmtpd_sender_restrictions = "+tab+"\nsmtpd_recipient_restrictions = "+tab+"\n", nil)
	expect(t, "helo foo.dunno.com", h.helo("foo.dunno.com"), "554 5.7.1 <foo.dunno.com>: Helo command rejected: Access denied")
	expect(t, "helo bar.dunno.com", h.helo("bar.dunno.com"), "OK")
	expect(t, "helo foo.duuno.com", h.helo("foo.duuno.com"), "OK")
	for _, c := range []struct{ name, addr, want string }{
		{"foo.dunno.com", "131.155.210.17", "554 5.7.1 <foo.dunno.com[131.155.210.17]>: Client host rejected: Access denied"},
		{"bar.dunno.com", "131.155.210.17", "OK"},
		{"bar.dunno.com", "131.155.210.19", "OK"},
		{"bar.duno.com", "131.155.210.17", "OK"},
		{"bar.duno.com", "131.155.210.19", "554 5.7.1 <bar.duno.com[131.155.210.19]>: Client host rejected: Access denied"},
		{"bar.duno.com", "44.33.22.11", "554 5.7.1 <bar.duno.com[44.33.22.11]>: Client host rejected: Access denied"},
		{"bar.duno.com", "44.33.22.55", "OK"},
		{"bar.duno.com", "44.33.44.33", "554 5.7.1 <bar.duno.com[44.33.44.33]>: Client host rejected: Access denied"},
	} {
		expect(t, "client "+c.name+" "+c.addr, h.client(c.name, c.addr, 2), c.want)
	}
	for _, c := range []struct{ addr, want string }{
		{"reject@dunno.domain", "554 5.7.1 <reject@dunno.domain>: Sender address rejected: Access denied"},
		{"ok@dunno.domain", "OK"}, {"anyone@dunno.domain", "OK"}, {"bad-sender@dunno.domain", "OK"},
		{"reject@reject.domain", "554 5.7.1 <reject@reject.domain>: Sender address rejected: Access denied"},
		{"ok@reject.domain", "OK"},
		{"anyone@reject.domain", "554 5.7.1 <anyone@reject.domain>: Sender address rejected: Access denied"},
		{"good-sender@reject.domain", "554 5.7.1 <good-sender@reject.domain>: Sender address rejected: Access denied"},
		{"reject@ok.domain", "554 5.7.1 <reject@ok.domain>: Sender address rejected: Access denied"},
		{"ok@ok.domain", "OK"}, {"bad-sender@ok.domain", "OK"},
		{"", "550 5.7.1 <>: Sender address rejected: Go away postmaster"},
	} {
		expect(t, "mail "+c.addr, h.mail(c.addr), c.want)
	}
	h.mail("bad-sender@ok.domain")
	expect(t, "rcpt reject@dunno.domain", h.rcpt("reject@dunno.domain"), "554 5.7.1 <reject@dunno.domain>: Recipient address rejected: Access denied")
	expect(t, "rcpt anyone@reject.domain", h.rcpt("anyone@reject.domain"), "554 5.7.1 <anyone@reject.domain>: Recipient address rejected: Access denied")
	expect(t, "rcpt ok@ok.domain", h.rcpt("ok@ok.domain"), "OK")
	expect(t, "rcpt postmaster", h.rcpt("postmaster"), "OK")
}

// TestAccessActions follows smtpd_check.in4/.ref4: HOLD, DISCARD, FILTER
// and their warnings, texts in the Decision's Reason.
func TestAccessActions(t *testing.T) {
	h := newHarness(t, "smtpd_sender_restrictions = "+accessTable(t)+"\n", nil)
	expect(t, "rejecttext", h.mail("rejecttext@bad.domain"), "554 5.7.1 <rejecttext@bad.domain>: Sender address rejected: text")
	expect(t, "filter", h.mail("filter@filter.domain"), "OK")
	h.wantLog(`entry "filter@filter.domain" has FILTER entry without value`)
	expect(t, "filtertext", h.mail("filtertext@filter.domain"), "OK")
	h.wantLog(`entry "filtertext@filter.domain" requires transport:destination`)
	for _, c := range []struct {
		addr, reason string
		check        func(*smtpd.Decision) bool
	}{
		{"filtertexttext@filter.domain", "<filtertexttext@filter.domain>: Sender address triggers FILTER text:text", func(d *smtpd.Decision) bool { return d.Filter == "text:text" }},
		{"hold@hold.domain", "<hold@hold.domain>: Sender address triggers HOLD action", func(d *smtpd.Decision) bool { return d.Hold }},
		{"holdtext@hold.domain", "<holdtext@hold.domain>: Sender address text", func(d *smtpd.Decision) bool { return d.Hold }},
		{"discard@hold.domain", "<discard@hold.domain>: Sender address triggers DISCARD action", func(d *smtpd.Decision) bool { return d.Discard }},
		{"discardtext@hold.domain", "<discardtext@hold.domain>: Sender address text", func(d *smtpd.Decision) bool { return d.Discard }},
	} {
		h.v.Sender, h.v.HasSender = c.addr, true
		d := h.decision(smtpd.StageMail)
		if d == nil || d.Refuses() || !c.check(d) || d.Reason != c.reason {
			t.Errorf("mail %s: decision %+v, want reason %q", c.addr, d, c.reason)
		}
	}
	expect(t, "dunnotext", h.mail("dunnotext@dunno.domain"), "OK")
}

// TestActionsInline covers the remaining access(5) actions with inline
// tables.
func TestActionsInline(t *testing.T) {
	h := newHarness(t, "smtpd_recipient_restrictions = check_recipient_access inline:{"+
		"{a@x.test=DEFER}, {b@x.test=DEFER 4.2.2 later}, {c@x.test=450 4.1.1 no such}, {d@x.test=521 go}, "+
		"{e@x.test=WARN careful}, {f@x.test=INFO noted}, {g@x.test=REDIRECT z@y.test}, {h@x.test=PREPEND X-Test: yes}, "+
		"{i@x.test=123456}, {j@x.test=RELAY}, {k@x.test=BCC z@y.test}, {l@x.test=PREPEND bad header}, {m@x.test=699 nope}, "+
		"{n@x.test=permit_mynetworks reject}, {o@x.test=hash:/etc/x}, {p@x.test=no_such_thing}}\n", nil)
	h.mail("s@y.test")
	for _, c := range []struct{ rcpt, want, log string }{
		{"a@x.test", "450 4.7.1 <a@x.test>: Recipient address rejected: Access denied", ""},
		{"b@x.test", "450 4.2.2 <b@x.test>: Recipient address rejected: later", ""},
		{"c@x.test", "450 4.1.1 <c@x.test>: Recipient address rejected: no such", ""},
		{"d@x.test", "521 5.7.1 <d@x.test>: Recipient address rejected: go", ""},
		{"e@x.test", "OK", "warn: RCPT from localhost[127.0.0.1]: careful; from=<s@y.test> to=<e@x.test> proto=SMTP"},
		{"f@x.test", "OK", "info: RCPT from localhost[127.0.0.1]: noted;"},
		{"i@x.test", "OK", ""},
		{"j@x.test", "OK", ""},
		{"k@x.test", "OK", "action BCC is not supported"},
		{"l@x.test", "OK", `requires header: text`},
		// not 4xx/5xx: read as a nested list, as Postfix does
		{"m@x.test", "451 4.3.5 Server configuration error", `unknown smtpd restriction: "699"`},
		{"n@x.test", "OK", ""},
		{"o@x.test", "451 4.3.5 Server configuration error", "do not specify lookup tables inside SMTPD access maps"},
		{"p@x.test", "451 4.3.5 Server configuration error", `unknown smtpd restriction: "no_such_thing"`},
	} {
		expect(t, "rcpt "+c.rcpt, h.rcpt(c.rcpt), c.want)
		if c.log != "" {
			h.wantLog(c.log)
		}
	}
	h.v.Recipient = "g@x.test"
	if d := h.decision(smtpd.StageRcpt); d == nil || d.Redirect != "z@y.test" || d.Reason != "<g@x.test>: Recipient address triggers REDIRECT z@y.test" {
		t.Errorf("redirect: %+v", d)
	}
	h.v.Recipient = "h@x.test"
	if d := h.decision(smtpd.StageRcpt); d == nil || len(d.Prepend) != 1 || d.Prepend[0] != "X-Test: yes" {
		t.Errorf("prepend: %+v", d)
	}
	// An outsider's nested list ends in reject.
	h.client("far.example", "198.51.100.7", 2)
	expect(t, "nested", h.rcpt("n@x.test"), "554 5.7.1 <n@x.test>: Recipient address rejected: Access denied")
}

// TestLookupErrors follows smtpd_error.in/.ref: a table that fails is a
// 451, never a permit.
func TestLookupErrors(t *testing.T) {
	h := newHarness(t, "smtpd_helo_restrictions = fail:1_helo_access\nsmtpd_client_restrictions = fail:1_client_access\n"+
		"smtpd_sender_restrictions = fail:1_sender_access\nsmtpd_recipient_restrictions = fail:1_rcpt_access\n", nil)
	expect(t, "helo", h.helo("foobar"), "451 4.3.5 <foobar>: Helo command rejected: Server configuration error")
	h.wantLog(`warning: fail:1_helo_access lookup error for "foobar"`)
	expect(t, "client", h.client("foo.dunno.com", "131.155.210.17", 2), "451 4.3.5 <foo.dunno.com[131.155.210.17]>: Client host rejected: Server configuration error")
	h.wantLog(`warning: fail:1_client_access lookup error for "foo.dunno.com"`)
	expect(t, "mail", h.mail("reject@dunno.domain"), "451 4.3.5 <reject@dunno.domain>: Sender address rejected: Server configuration error")
	expect(t, "mail <>", h.mail(""), "451 4.3.5 <>: Sender address rejected: Server configuration error")
	h.wantLog(`lookup error for "<>"`)
	expect(t, "rcpt", h.rcpt("reject@dunno.domain"), "451 4.3.5 <reject@dunno.domain>: Recipient address rejected: Server configuration error")
	expect(t, "rcpt postmaster", h.rcpt("postmaster"), "OK")

	h2 := newHarness(t, "mynetworks = fail:1_mynetworks\nsmtpd_recipient_restrictions = permit_mynetworks\n", nil)
	expect(t, "mynetworks", h2.rcpt("reject@dunno.domain"), "451 4.3.0 <reject@dunno.domain>: Temporary lookup failure")
	h3 := newHarness(t, "mydestination = fail:1_mydestination\nsmtpd_recipient_restrictions = reject_unauth_destination\n", nil)
	expect(t, "mydestination", h3.rcpt("user@example.com"), "451 4.3.0 <user@example.com>: Temporary lookup failure")
}

// TestFlags covers warn_if_reject, defer_if_permit, defer_if_reject,
// restriction classes and the 3.9 answer for removed restrictions.
func TestFlags(t *testing.T) {
	h := newHarness(t, "smtpd_restriction_classes = strict, dipc, dirc, dirpc\nstrict = reject_non_fqdn_sender, permit\n"+
		"dipc = defer_if_permit\ndirc = defer_if_reject reject\ndirpc = defer_if_reject permit\n"+
		"smtpd_sender_restrictions = check_sender_access inline:{{s@strict.test=strict}}, warn_if_reject reject_non_fqdn_sender\n"+
		"smtpd_recipient_restrictions = check_recipient_access inline:{{dip@x.test=dipc}, {dir@x.test=dirc}, {dirp@x.test=dirpc}, {act@x.test=DEFER_IF_PERMIT}, {old@x.test=check_relay_domains}, {old2@x.test=permit_naked_ip_address}, {old3@x.test=reject_maps_rbl}}, permit\n", nil)
	expect(t, "warn_if_reject", h.mail("user@nodots"), "OK")
	h.wantLog("reject_warning: MAIL from localhost[127.0.0.1]: 504 5.5.2 <user@nodots>: Sender address rejected: need fully-qualified address; from=<user@nodots>")
	expect(t, "class", h.mail("s@strict.test"), "OK")
	h.mail("s@y.test")
	expect(t, "defer_if_permit", h.rcpt("dip@x.test"), "450 4.7.0 <dip@x.test>: Recipient address rejected: defer_if_permit requested")
	expect(t, "defer_if_reject", h.rcpt("dir@x.test"), "450 4.7.0 <dir@x.test>: Recipient address rejected: defer_if_reject requested")
	expect(t, "defer_if_reject permit", h.rcpt("dirp@x.test"), "OK")
	expect(t, "DEFER_IF_PERMIT action", h.rcpt("act@x.test"), "450 4.7.1 <act@x.test>: Recipient address rejected: Service unavailable")
	expect(t, "check_relay_domains", h.rcpt("old@x.test"), "451 4.3.5 Server configuration error")
	h.wantLog(`warning: support for restriction "check_relay_domains" has been removed in Postfix 3.9; instead, specify "reject_unauth_destination"`)
	expect(t, "permit_naked_ip_address", h.rcpt("old2@x.test"), "451 4.3.5 Server configuration error")
	h.wantLog(`"permit_naked_ip_address" has been removed in Postfix 3.9; instead, specify "permit_mynetworks" or "permit_sasl_authenticated"`)
	expect(t, "reject_maps_rbl", h.rcpt("old3@x.test"), "451 4.3.5 Server configuration error")

	// The obsolete names load from main.cf too.
	h2 := newHarness(t, "smtpd_recipient_restrictions = check_relay_domains\n", nil)
	expect(t, "main.cf check_relay_domains", h2.rcpt("a@b.test"), "451 4.3.5 Server configuration error")
}

// TestDelayReject: with smtpd_delay_reject = yes a client reject shows at
// RCPT, and a defer_if_permit from the client list defers a permitted
// recipient.
func TestDelayReject(t *testing.T) {
	h := newHarness(t, "smtpd_delay_reject = yes\nsmtpd_client_restrictions = check_client_access inline:{{192.0.2.1=REJECT}, {192.0.2.2=DEFER_IF_PERMIT slow down}}\n"+
		"smtpd_recipient_restrictions = permit\n", nil)
	h.v.ClientName, h.v.ClientAddr = "c.test", netip.MustParseAddr("192.0.2.1")
	h.v.Sender, h.v.HasSender = "s@y.test", true
	h.v.Recipient = "u@x.test"
	// smtpd asks the earlier stages again at RCPT; they answer nothing
	if d := h.decision(smtpd.StageConnect); d != nil {
		t.Errorf("delayed connect stage decided: %+v", d)
	}
	h.v.Recipient = ""
	expect(t, "rcpt", h.rcpt("u@x.test"), "554 5.7.1 <c.test[192.0.2.1]>: Client host rejected: Access denied")
	h.v.ClientAddr = netip.MustParseAddr("192.0.2.2")
	expect(t, "rcpt dip", h.rcpt("u@x.test"), "450 4.7.1 <c.test[192.0.2.2]>: Client host rejected: slow down")
}

// TestHostnameChecks: HELO and address syntax, unknown client names.
func TestHostnameChecks(t *testing.T) {
	h := newHarness(t, "smtpd_helo_restrictions = reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname\n"+
		"smtpd_client_restrictions = reject_unknown_client_hostname\n"+
		"smtpd_sender_restrictions = reject_non_fqdn_sender\nsmtpd_recipient_restrictions = reject_non_fqdn_recipient, reject_unauth_destination\n", nil)
	expect(t, "helo bad", h.helo("bad_name!"), "501 5.5.2 <bad_name!>: Helo command rejected: Invalid name")
	expect(t, "helo short", h.helo("localhost"), "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname")
	expect(t, "helo literal", h.helo("[1.2.3.4]"), "OK")
	expect(t, "helo bad literal", h.helo("[1.2.3]"), "501 5.5.2 <[1.2.3]>: Helo command rejected: invalid ip address")
	expect(t, "helo dot", h.helo("mx.example.com."), "OK")
	expect(t, "unknown 4", h.client("unknown", "192.0.2.9", 4), "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.9]")
	expect(t, "unknown 5", h.client("unknown", "192.0.2.9", 5), "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.9]")
	expect(t, "known", h.client("ok.example", "192.0.2.9", 2), "OK")
	expect(t, "sender", h.mail("user@localhost"), "504 5.5.2 <user@localhost>: Sender address rejected: need fully-qualified address")
	expect(t, "sender literal", h.mail("user@[192.0.2.1]"), "OK")
	expect(t, "rcpt", h.rcpt("user"), "504 5.5.2 <user>: Recipient address rejected: need fully-qualified address")
	for _, r := range []string{"u%victim.example@mx.moat.test", "victim.example!u@mx.moat.test", "u@victim.example@mx.moat.test"} {
		expect(t, "routed "+r, h.rcpt(r), "554 5.7.1 <"+r+">: Relay access denied")
	}
	expect(t, "local", h.rcpt("u@MX.moat.test."), "OK")
}

// TestStartupErrors: what New refuses.
func TestStartupErrors(t *testing.T) {
	cf := "smtpd_forbid_unauth_pipelining = no\nsmtpd_relay_restrictions = reject_unauth_pipelining, reject_unauth_destination\n"
	if _, err := New(load(t, base+cf), optsForTest(), nil); err == nil || !strings.Contains(err.Error(), "smtpd_forbid_unauth_pipelining") {
		t.Errorf("reject_unauth_pipelining without smtpd_forbid_unauth_pipelining: %v", err)
	}
	for _, cf := range []string{
		"smtpd_relay_restrictions = reject_unauth_destination\nsmtpd_client_restrictions = permit_nothing\n",
		"smtpd_relay_restrictions = reject_unauth_destination\nsmtpd_sender_restrictions = reject_unverified_sender\n",
		"smtpd_relay_restrictions = reject_unauth_destination\nsmtpd_sender_restrictions = sleep x\n",
		"smtpd_relay_restrictions = reject_unauth_destination\nsmtpd_sender_restrictions = check_policy_service nowhere\n",
	} {
		if _, err := New(load(t, base+cf), optsForTest(), nil); err == nil {
			t.Errorf("%q: no error", cf)
		} else if !strings.Contains(err.Error(), "smtpd_") {
			t.Errorf("%q: error %v does not name the parameter", cf, err)
		}
	}
}

// TestEtrn: smtpd_etrn_restrictions, with the delayed client list first.
func TestEtrn(t *testing.T) {
	h := newHarness(t, "smtpd_delay_reject = yes\nsmtpd_client_restrictions = check_client_access inline:{{192.0.2.1=REJECT}}\n"+
		"smtpd_etrn_restrictions = permit_mynetworks, check_etrn_access inline:{{ok.test=OK}}, reject\n", nil)
	h.v.EtrnDomain = "ok.test"
	expect(t, "etrn ok", h.run(smtpd.StageEtrn), "OK")
	h.v.EtrnDomain = "other.test"
	expect(t, "etrn other", h.run(smtpd.StageEtrn), "OK") // localhost is in mynetworks
	h.v.ClientAddr = netip.MustParseAddr("198.51.100.1")
	expect(t, "etrn outsider", h.run(smtpd.StageEtrn), "554 5.7.1 <other.test>: Etrn command rejected: Access denied")
	h.v.ClientAddr = netip.MustParseAddr("192.0.2.1")
	expect(t, "etrn client reject", h.run(smtpd.StageEtrn), "554 5.7.1 <localhost[192.0.2.1]>: Client host rejected: Access denied")
}

// TestStandaloneRunTime: the test driver sees Postfix's run-time answers
// where a daemon fails at start (a bad mynetworks), and HOLD/DISCARD/FILTER
// records logged when they fire.
func TestStandaloneRunTime(t *testing.T) {
	h := newHarness(t, "mynetworks = 168.100.3.1/27\nsmtpd_recipient_restrictions = permit_mynetworks\n"+
		"smtpd_sender_restrictions = "+accessTable(t)+"\n", nil)
	expect(t, "bad mynetworks", h.rcpt("reject@dunno.domain"), "451 4.3.0 <reject@dunno.domain>: Temporary lookup failure")
	h.wantLog(`warning: mynetworks: non-null host address bits in "168.100.3.1/27", perhaps you should use "168.100.3.0/27" instead`)
	h.v.QueueID = "<queue id>"
	expect(t, "hold", h.mail("hold@hold.domain"), "OK")
	h.wantLog("<queue id>: hold: MAIL from localhost[127.0.0.1]: <hold@hold.domain>: Sender address triggers HOLD action; from=<hold@hold.domain> proto=SMTP")
	if _, err := New(load(t, base+"mynetworks = 168.100.3.1/27\n"), optsForTest(), nil); err == nil {
		t.Error("New accepted a mynetworks with host bits set")
	}
}

// TestSASLAndTLS: sender login maps, check_sasl_access, relay_clientcerts,
// check_ccert_access and reject_plaintext_session.
func TestSASLAndTLS(t *testing.T) {
	h := newHarness(t, "smtpd_sasl_auth_enable = yes\nsmtpd_sender_login_maps = inline:{{alice@x.test=alice}, {@shared.test=bob, carol}}\n"+
		"smtpd_sender_restrictions = reject_sender_login_mismatch\n"+
		"relay_clientcerts = inline:{{aa:bb=client1}}\n"+
		"smtpd_recipient_restrictions = check_sasl_access inline:{{mallory=REJECT no}}, check_ccert_access inline:{{cc:dd=REJECT revoked}}, permit_tls_clientcerts, reject_plaintext_session, reject_unauth_destination\n", nil)
	expect(t, "owner", func() string { h.v.SASLUser = "alice"; return h.mail("alice@x.test") }(), "OK")
	expect(t, "not owner", h.mail("other@shared.test"), "553 5.7.1 <other@shared.test>: Sender address rejected: not owned by user alice")
	expect(t, "unknown address", h.mail("nobody@y.test"), "553 5.7.1 <nobody@y.test>: Sender address rejected: not owned by user alice")
	h.v.SASLUser = "carol"
	expect(t, "domain owner", h.mail("any@shared.test"), "OK")
	h.v.SASLUser = ""
	expect(t, "not logged in", h.mail("alice@x.test"), "553 5.7.1 <alice@x.test>: Sender address rejected: not logged in")
	expect(t, "unowned anonymous", h.mail("nobody@y.test"), "OK")

	h.v.SASLUser = "mallory"
	expect(t, "sasl access", h.rcpt("u@far.test"), "554 5.7.1 <mallory>: SASL login name rejected: no")
	h.v.SASLUser = ""
	expect(t, "plaintext", h.rcpt("u@far.test"), "450 4.7.1 Session encryption is required")
	h.v.TLS = &smtpd.TLSInfo{Protocol: "TLSv1.3", PeerVerified: true, CertFingerprint: "AA:BB", PeerSubject: "client1"}
	expect(t, "relay cert", h.rcpt("u@far.test"), "OK")
	h.v.TLS = &smtpd.TLSInfo{Protocol: "TLSv1.3", PeerVerified: true, CertFingerprint: "CC:DD", PeerSubject: "client2"}
	expect(t, "ccert", h.rcpt("u@far.test"), "554 5.7.1 <client2>: Client certificate rejected: revoked")
	h.v.TLS = &smtpd.TLSInfo{Protocol: "TLSv1.3"}
	expect(t, "tls, no cert", h.rcpt("u@far.test"), "554 5.7.1 <u@far.test>: Relay access denied")
}

// TestDataStages: smtpd_data_restrictions and
// smtpd_end_of_data_restrictions, reject_multi_recipient_bounce.
func TestDataStages(t *testing.T) {
	h := newHarness(t, "smtpd_data_restrictions = reject_multi_recipient_bounce\nsmtpd_end_of_data_restrictions = check_client_access inline:{{127.0.0.1=REJECT too big}}\n", nil)
	h.mail("")
	h.v.Recipients = []string{"a@x.test", "b@x.test"}
	expect(t, "data", h.run(smtpd.StageData), "550 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce")
	h.v.Recipients = []string{"a@x.test"}
	expect(t, "data one", h.run(smtpd.StageData), "OK")
	expect(t, "eod", h.run(smtpd.StageEndOfData), "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: too big")
}

// TestSessionState: through Lists.Check (smtpd's entry) with
// smtpd_delay_reject = no, a defer_if_permit raised at CONNECT still
// defers a permitted RCPT of the same SMTP session (same DNS cache), not
// another session's; the state goes when the session's cache does.
func TestSessionState(t *testing.T) {
	cfg := load(t, hbase+"smtpd_client_restrictions = check_client_access inline:{{192.0.2.2=DEFER_IF_PERMIT slow down}}\nsmtpd_recipient_restrictions = permit\n")
	l, err := NewStandalone(cfg, optsForTest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	view := func() *smtpd.View {
		return &smtpd.View{ClientName: "c.test", ClientAddr: netip.MustParseAddr("192.0.2.2"), ClientNameStatus: 2,
			Helo: "h.test", Sender: "s@x.test", HasSender: true, DNS: l.dns.Session()}
	}
	v := view()
	for _, st := range []smtpd.Stage{smtpd.StageConnect, smtpd.StageHelo, smtpd.StageMail} {
		if d, _ := l.Check(ctx, st, v); d != nil {
			t.Fatalf("%s: %+v", st, d)
		}
	}
	v.Recipient = "u@mx.moat.test"
	d, _ := l.Check(ctx, smtpd.StageRcpt, v)
	if !d.Refuses() || d.Reply.String() != "450 4.7.1 <c.test[192.0.2.2]>: Client host rejected: slow down" {
		t.Errorf("rcpt in the same session: %+v", d)
	}
	other := view()
	other.Recipient = "u@mx.moat.test"
	if d, _ := l.Check(ctx, smtpd.StageRcpt, other); d != nil {
		t.Errorf("rcpt in another session: %+v", d)
	}
	v, other = nil, nil
	for i := 0; i < 50; i++ {
		runtime.GC()
		l.mu.Lock()
		n := len(l.sessions)
		l.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Error("session state kept after the sessions ended")
}
