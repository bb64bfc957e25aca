package test

import (
	"regexp"
	"testing"
	"time"
)

// TestRestrictETRN: smtpd_etrn_restrictions refuse an outsider with
// Postfix's reply and reject record; an insider still gets the 459 (moat
// has no fast-flush service).
func TestRestrictETRN(t *testing.T) {
	t.Parallel()
	s := startServer(t, "smtpd_peername_lookup = no\nmynetworks = 127.0.0.0/25\n"+
		"smtpd_etrn_restrictions = permit_mynetworks, reject\n")
	d := rawSession(t, s.addr(), outsider)
	d.step("EHLO client.example")
	if got := d.step("ETRN example.com"); got != "554 5.7.1 <example.com>: Etrn command rejected: Access denied" {
		t.Errorf("outsider ETRN: %q", got)
	}
	d.step("QUIT")
	s.waitLog(regexp.QuoteMeta("NOQUEUE: reject: ETRN from unknown[127.0.0.200]: 554 5.7.1 <example.com>: Etrn command rejected: Access denied; proto=ESMTP helo=<client.example>"), 10*time.Second)
	d = rawSession(t, s.addr(), insider)
	d.step("EHLO client.example")
	if got := d.step("ETRN example.com"); got != "459 <example.com>: service unavailable" {
		t.Errorf("insider ETRN: %q", got)
	}
	d.step("QUIT")
}

// TestRestrictActionsLogged: WARN and warn_if_reject log Postfix's
// records through the daemon's log; HOLD and a nested restriction list
// from an access table act on the real session.
func TestRestrictActionsLogged(t *testing.T) {
	t.Parallel()
	s := startServer(t, "smtpd_peername_lookup = no\nmynetworks = 127.0.0.0/25\n"+
		"smtpd_sender_restrictions = check_sender_access inline:{{watch@example.net=WARN watched sender}, {held@example.net=HOLD}, {strict@example.net=permit_mynetworks reject}}, warn_if_reject reject_non_fqdn_sender\n")
	d := rawSession(t, s.addr(), outsider)
	d.step("EHLO client.example")
	for _, c := range []struct{ from, want string }{
		{"watch@example.net", "250 2.1.5 Ok"},
		{"held@example.net", "250 2.1.5 Ok"},
		{"strict@example.net", "554 5.7.1 <strict@example.net>: Sender address rejected: Access denied"},
		{"nodots", "250 2.1.5 Ok"},
	} {
		d.step("RSET")
		d.step("MAIL FROM:<" + c.from + ">")
		if got := d.step("RCPT TO:<user@mx.moat.test>"); got != c.want {
			t.Errorf("MAIL FROM:<%s>, RCPT: %q, want %q", c.from, got, c.want)
		}
	}
	d.step("QUIT")
	s.waitLog(regexp.QuoteMeta("warn: RCPT from unknown[127.0.0.200]: watched sender; from=<watch@example.net> to=<user@mx.moat.test> proto=ESMTP helo=<client.example>"), 10*time.Second)
	s.waitLog(regexp.QuoteMeta("hold: RCPT from unknown[127.0.0.200]: <held@example.net>: Sender address triggers HOLD action; from=<held@example.net> to=<user@mx.moat.test>"), 10*time.Second)
	s.waitLog(regexp.QuoteMeta("reject_warning: RCPT from unknown[127.0.0.200]: 504 5.5.2 <nodots>: Sender address rejected: need fully-qualified address; from=<nodots> to=<user@mx.moat.test>"), 10*time.Second)
}
