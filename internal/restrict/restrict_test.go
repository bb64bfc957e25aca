package restrict

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"moat/internal/config"
	"moat/internal/config/configtest"
	"moat/internal/maps"
	"moat/internal/smtpd"
)

func load(t testing.TB, mainCF string) *config.Config {
	t.Helper()
	return configtest.Load(t, mainCF)
}

const base = "myhostname = mx.moat.test\nmydomain = moat.test\nmydestination = $myhostname, localhost\nmynetworks = 192.0.2.0/24\ninet_interfaces = loopback-only\n"

func rcpt(t *testing.T, l *Lists, client, to, sasl string) string {
	t.Helper()
	v := &smtpd.View{ClientAddr: netip.MustParseAddr(client), Recipient: to, SASLUser: sasl, Helo: "h"}
	d, err := l.Check(context.Background(), smtpd.StageRcpt, v)
	if err != nil {
		t.Fatal(err)
	}
	if d == nil {
		return "ok"
	}
	return d.Reply.String()
}

// TestDefaultNotOpenRelay: with compatibility_level 3.6's default
// smtpd_relay_restrictions (permit_mynetworks, permit_sasl_authenticated,
// defer_unauth_destination) outsiders reach local domains only.
func TestDefaultNotOpenRelay(t *testing.T) {
	l, err := New(load(t, base), maps.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, c := range []struct{ client, to, sasl, want string }{
		{"198.51.100.1", "user@mx.moat.test", "", "ok"},
		{"198.51.100.1", "user@LOCALHOST", "", "ok"},
		{"198.51.100.1", "victim@example.net", "", "454 4.7.1 <victim@example.net>: Relay access denied"},
		{"198.51.100.1", "victim@example.net@mx.moat.test", "", "454 4.7.1 <victim@example.net@mx.moat.test>: Relay access denied"},
		{"198.51.100.1", "victim%example.net@mx.moat.test", "", "454 4.7.1 <victim%example.net@mx.moat.test>: Relay access denied"},
		{"198.51.100.1", "victim.example!u", "", "454 4.7.1 <victim.example!u>: Relay access denied"},
		{"198.51.100.1", "postmaster", "", "ok"},
		{"198.51.100.1", "user", "", "ok"},
		{"192.0.2.9", "victim@example.net", "", "ok"},
		{"198.51.100.1", "victim@example.net", "alice", "ok"},
	} {
		if got := rcpt(t, l, c.client, c.to, c.sasl); got != c.want {
			t.Errorf("%s → %s (sasl %q): %q, want %q", c.client, c.to, c.sasl, got, c.want)
		}
	}
}

// TestSeedRecipientRestrictions is seed 002's port-25 list.
func TestSeedRecipientRestrictions(t *testing.T) {
	cfg := load(t, base+"smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, permit\n")
	l, err := New(cfg, maps.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := rcpt(t, l, "198.51.100.1", "victim@example.net", "alice"); got != "554 5.7.1 <victim@example.net>: Relay access denied" {
		t.Errorf("got %q", got)
	}
	if got := rcpt(t, l, "198.51.100.1", "u@mx.moat.test", ""); got != "ok" {
		t.Errorf("got %q", got)
	}
	// Submission: permit_sasl_authenticated, reject.
	sub := cfg.WithOverrides(map[string]string{"smtpd_recipient_restrictions": "permit_sasl_authenticated,reject"})
	l2, err := New(sub, maps.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if got := rcpt(t, l2, "198.51.100.1", "u@mx.moat.test", ""); got != "554 5.7.1 <u@mx.moat.test>: Recipient address rejected: Access denied" {
		t.Errorf("got %q", got)
	}
	if got := rcpt(t, l2, "198.51.100.1", "victim@example.net", "alice"); got != "ok" {
		t.Errorf("got %q", got)
	}
}

// TestFailClosed: an open-relay configuration and restrictions this
// version cannot evaluate are start-up errors.
func TestFailClosed(t *testing.T) {
	for _, c := range []struct{ cf, want string }{
		{"smtpd_relay_restrictions =\nsmtpd_recipient_restrictions = permit_mynetworks, permit\n", "open relay"},
		{"smtpd_recipient_restrictions = reject_unauth_destination, reject_bogus_thing\n", `unknown restriction "reject_bogus_thing"`},
		{"smtpd_recipient_restrictions = reject_unauth_destination, reject_unverified_recipient\n", `address verification`},
		{"smtpd_recipient_restrictions = reject_unauth_destination, reject_rbl_client\n", `needs an argument`},
		{"smtpd_recipient_restrictions = reject_unauth_destination, reject_rbl_client zen.example=127.0.0.[9..2]\n", `reject_rbl_client zen.example=127.0.0.[9..2]`},
		{"smtpd_recipient_restrictions = reject_unauth_destination, check_sender_access\n", `needs an argument`},
		{"smtpd_recipient_restrictions = reject_unauth_destination, check_sender_access nomap\n", `need maptype:mapname`},
		{"smtpd_restriction_classes = foo\nsmtpd_recipient_restrictions = reject_unauth_destination\n", "needs a definition"},
		{"smtpd_recipient_restrictions = reject_unauth_destination, check_client_access texthash:/nonexistent/x\n", "nonexistent"},
	} {
		_, err := New(load(t, base+c.cf), maps.DefaultOptions(), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.cf, err, c.want)
		}
	}
}
