package smtpd

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"moat/internal/config/configtest"
	"moat/internal/maps"
	"moat/internal/queue"
	"moat/internal/rewrite"
)

func newUnlisted(t *testing.T, mainCF string) *Unlisted {
	t.Helper()
	u, err := NewUnlisted(configtest.Load(t, mainCF), maps.DefaultOptions())
	if err != nil {
		t.Fatalf("NewUnlisted: %v", err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// Postfix's smtpd/smtpd_addr_valid.in and .ref: canonical maps make an
// address known; the rest of a local domain must be in
// local_recipient_maps.
func TestUnlistedPostfixVectors(t *testing.T) {
	u := newUnlisted(t, `myhostname = mx.example.com
inet_interfaces = loopback-only
mydestination = example.com
myorigin = example.com
show_user_unknown_table_name = yes
smtpd_reject_unlisted_sender = yes
local_recipient_maps = inline:{foo_canon=whatever,bar_canon=whatever}
sender_canonical_maps = inline:{foo@example.com=foo_canon@example.com}
recipient_canonical_maps = inline:{bar@example.com=bar_canon@example.com}
`)
	for _, tc := range []struct {
		sender bool
		addr   string
		want   string
	}{
		{true, "bar_canon@example.com", ""},
		{true, "bar@example.com", ""},
		{true, "foo_canon@example.com", ""},
		{true, "foo@example.com", ""},
		{true, "baz@example.com", "550 5.1.0 <baz@example.com>: Sender address rejected: User unknown in local recipient table"},
		{false, "bar_canon@example.com", ""},
		{false, "bar@example.com", ""},
		{false, "foo_canon@example.com", ""},
		{false, "foo@example.com", "550 5.1.1 <foo@example.com>: Recipient address rejected: User unknown in local recipient table"},
	} {
		check := u.Recipient
		if tc.sender {
			check = u.Sender
		}
		r, err := check(tc.addr, tc.addr)
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		got := ""
		if r != nil {
			got = r.String()
		}
		if got != tc.want {
			t.Errorf("sender=%v %s: %q, want %q", tc.sender, tc.addr, got, tc.want)
		}
	}
}

func TestUnlistedClasses(t *testing.T) {
	dir := t.TempDir()
	aliases := filepath.Join(dir, "aliases")
	if err := os.WriteFile(aliases, []byte("alias root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u := newUnlisted(t, fmt.Sprintf(`myhostname = mx.example.com
inet_interfaces = loopback-only
mydestination = $myhostname, local.example
recipient_delimiter = +
alias_maps = texthash:%s
local_recipient_maps = inline:{ user=x } $alias_maps
virtual_alias_domains = valias.example
virtual_alias_maps = inline:{ known@valias.example=user@local.example, @catch.example=user@local.example }
virtual_mailbox_domains = vmbox.example
virtual_mailbox_maps = inline:{ box@vmbox.example=x }
relay_domains = relay.example, norcpt.example
relay_recipient_maps = inline:{ r@relay.example=x }
unknown_virtual_mailbox_reject_code = 551
unknown_relay_recipient_reject_code = 552
`, aliases))
	for addr, want := range map[string]string{
		"user@local.example":          "",
		"user+ext@local.example":      "",
		"USER@MX.EXAMPLE.COM":         "",
		"user":                        "", // user@$myorigin
		"alias@local.example":         "",
		"nobody@local.example":        "550 5.1.1 <nobody@local.example>: Recipient address rejected: User unknown",
		"nobody":                      "550 5.1.1 <nobody>: Recipient address rejected: User unknown",
		"postmaster@local.example":    "",
		"MAILER-DAEMON@local.example": "",
		"double-bounce@local.example": "",
		"known@valias.example":        "",
		"other@valias.example":        "550 5.1.1 <other@valias.example>: Recipient address rejected: User unknown",
		"anyone@catch.example":        "", // virtual_alias_maps knows it, whatever the class
		"box@vmbox.example":           "",
		"other@vmbox.example":         "551 5.1.1 <other@vmbox.example>: Recipient address rejected: User unknown",
		"r@relay.example":             "",
		"r+x@relay.example":           "",
		"other@relay.example":         "552 5.1.1 <other@relay.example>: Recipient address rejected: User unknown",
		"other@elsewhere.example":     "",
	} {
		r, err := u.Recipient(addr, addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		got := ""
		if r != nil {
			got = r.String()
		}
		// moat's default show_user_unknown_table_name = no hides the
		// table name.
		if got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
	// Sender checks are off by default.
	if r, err := u.Sender("nobody@local.example", "nobody@local.example"); r != nil || err != nil {
		t.Errorf("sender: %v %v", r, err)
	}
}

// Empty local_recipient_maps turns the local check off; an empty
// relay_recipient_maps or virtual_mailbox_maps the same for its class.
func TestUnlistedEmpty(t *testing.T) {
	u := newUnlisted(t, "myhostname = mx.example.com\ninet_interfaces = loopback-only\nlocal_recipient_maps =\nvirtual_mailbox_domains = v.example\nrelay_domains = r.example\n")
	for _, a := range []string{"nobody@mx.example.com", "x@v.example", "x@r.example"} {
		if r, err := u.Recipient(a, a); r != nil || err != nil {
			t.Errorf("%s: %v %v", a, r, err)
		}
	}
	for _, p := range []string{"smtpd_reject_unlisted_recipient = no", "receive_override_options = no_unknown_recipient_checks\nsmtpd_reject_unlisted_sender = yes"} {
		off := newUnlisted(t, "myhostname = mx.example.com\nlocal_recipient_maps = fail:down\n"+p+"\n")
		if r, err := off.Recipient("x@mx.example.com", "x@mx.example.com"); r != nil || err != nil {
			t.Errorf("%s: %v %v", p, r, err)
		}
		if r, err := off.Sender("x@mx.example.com", "x@mx.example.com"); r != nil || err != nil {
			t.Errorf("%s: sender %v %v", p, r, err)
		}
	}
}

// A table that cannot answer defers: "451 4.3.0 <addr>: Temporary lookup
// failure", never "User unknown".
func TestUnlistedLookupFailure(t *testing.T) {
	for _, param := range []string{"local_recipient_maps", "virtual_alias_maps", "recipient_canonical_maps", "mydestination"} {
		extra := ""
		if param != "mydestination" {
			extra = "mydestination = $myhostname\n"
		}
		if param == "virtual_alias_maps" {
			extra += "virtual_alias_domains =\n"
		}
		u := newUnlisted(t, "myhostname = mx.example.com\ninet_interfaces = loopback-only\nalias_maps =\n"+extra+param+" = fail:down\n")
		r, err := u.Recipient("a@mx.example.com", "a@mx.example.com")
		if r == nil || r.String() != "451 4.3.0 <a@mx.example.com>: Temporary lookup failure" || err == nil {
			t.Errorf("%s: %v %v", param, r, err)
		}
	}
}

// Over SMTP: the refusal comes after the restrictions permitted, is logged
// as a reject record, and does not end the transaction.
func TestUnlistedSession(t *testing.T) {
	params := map[string]string{
		"mydestination":                "$myhostname",
		"inet_interfaces":              "loopback-only",
		"local_recipient_maps":         "inline:{ user=x }",
		"show_user_unknown_table_name": "yes",
		"virtual_alias_domains":        "",
		"virtual_alias_maps":           "inline:{ {alias@mx.example.com=user@mx.example.com, other@example.org} }",
		"smtpd_reject_unlisted_sender": "yes",
	}
	mk := func(delay string) *harness {
		p := map[string]string{}
		for k, v := range params {
			p[k] = v
		}
		p["smtpd_delay_reject"] = delay
		return newHarness(t, p, nil, "", func(s *Server) {
			u, err := NewUnlisted(s.d.Config, maps.DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			rw, err := rewrite.New(s.d.Config, maps.DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			s.d.Unlisted, s.d.Rewrite = u, rw
			t.Cleanup(func() { u.Close(); rw.Close() })
		})
	}
	h := mk("yes")
	c := h.greeted()
	c.cmd("EHLO client.example", "250")
	c.cmd("MAIL FROM:<user@mx.example.com>", "250 2.1.0")
	c.cmd("RCPT TO:<nobody@mx.example.com>", "550 5.1.1 <nobody@mx.example.com>: Recipient address rejected: User unknown in local recipient table")
	c.cmd("RCPT TO:<alias@mx.example.com>", "250 2.1.5")
	c.cmd("RCPT TO:<user@mx.example.com>", "250 2.1.5")
	c.cmd("DATA", "354")
	c.write(body + ".\r\n")
	got := c.expect("250 2.0.0 Ok: queued as ")
	info, err := h.q.Stat(queue.Incoming, got[len("250 2.0.0 Ok: queued as "):])
	if err != nil {
		t.Fatal(err)
	}
	var rc []string
	for _, r := range info.Envelope.Recipients {
		rc = append(rc, r.Address+"<"+r.Orig)
	}
	// alias expands to two; user@ from the alias and user@ given
	// directly differ in their original address and both stay.
	if want := []string{"user@mx.example.com<alias@mx.example.com", "other@example.org<alias@mx.example.com", "user@mx.example.com<"}; !slices.Equal(rc, want) {
		t.Errorf("queued recipients %q, want %q", rc, want)
	}
	// With smtpd_delay_reject the sender check is made at RCPT.
	c.cmd("MAIL FROM:<stranger@mx.example.com>", "250 2.1.0")
	c.cmd("RCPT TO:<user@mx.example.com>", "550 5.1.0 <stranger@mx.example.com>: Sender address rejected: User unknown in local recipient table")
	c.cmd("QUIT", "221")
	h.waitLog("NOQUEUE: reject: RCPT from " + h.client + ": 550 5.1.1 <nobody@mx.example.com>: Recipient address rejected: User unknown in local recipient table; from=<user@mx.example.com> to=<nobody@mx.example.com> proto=ESMTP helo=<client.example>")
	h.waitLog("reject: RCPT from " + h.client + ": 550 5.1.0 <stranger@mx.example.com>: Sender address rejected: User unknown in local recipient table; from=<stranger@mx.example.com> to=<user@mx.example.com> proto=ESMTP helo=<client.example>")

	// Without it, at MAIL.
	h = mk("no")
	c = h.greeted()
	c.cmd("HELO client.example", "250")
	c.cmd("MAIL FROM:<stranger@mx.example.com>", "550 5.1.0 <stranger@mx.example.com>: Sender address rejected")
	c.cmd("MAIL FROM:<>", "250")
	c.cmd("RCPT TO:<nobody@mx.example.com>", "550 5.1.1")
	c.cmd("QUIT", "221")
	h.waitLog("NOQUEUE: reject: MAIL from " + h.client + ": 550 5.1.0 <stranger@mx.example.com>: Sender address rejected: User unknown in local recipient table; from=<stranger@mx.example.com> proto=SMTP helo=<client.example>")
}

// A rewriting failure at the end of DATA is cleanup's CLEANUP_STAT_WRITE:
// "451 4.3.0 Error: queue file write error", nothing queued, the session
// goes on.
func TestRewriteFailureSession(t *testing.T) {
	h := newHarness(t, map[string]string{"virtual_alias_domains": "", "virtual_alias_maps": "fail:down"}, nil, "", func(s *Server) {
		rw, err := rewrite.New(s.d.Config, maps.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		s.d.Rewrite = rw
		t.Cleanup(func() { rw.Close() })
	})
	c := h.greeted()
	c.cmd("EHLO client.example", "250")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.cmd("DATA", "354")
	c.write(body + ".\r\n")
	c.expect("451 4.3.0 Error: queue file write error")
	c.cmd("NOOP", "250")
	if ids := h.messages(queue.Incoming); len(ids) != 0 {
		t.Errorf("queued %v", ids)
	}
	h.waitLog("virtual_alias_maps map lookup problem for b@example.com -- message not accepted, try again later")
	for _, l := range h.logs() {
		if strings.Contains(l, "queued as") {
			t.Errorf("logged %q", l)
		}
	}
}
