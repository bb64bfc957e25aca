package restrict

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/smtpd"
	"moat/internal/testutil/dnsserver"
)

// FuzzSplitRestrictions: a restriction list splits into non-empty tokens
// with no separator outside a "{...}" group, losing no other byte.
func FuzzSplitRestrictions(f *testing.F) {
	for _, s := range []string{
		"permit_mynetworks, reject_unauth_destination",
		"check_helo_mx_access,inline:{168.100.3.2=reject}",
		"check_client_access inline:{{a=b}, {c = d e}}, reject",
		"{ unbalanced , x", "}}, a", "\t\r\n,,", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		toks := config.SplitList(s)
		n := 0
		for _, tok := range toks {
			if tok == "" {
				t.Fatalf("empty token in %q", toks)
			}
			if !strings.Contains(tok, "{") && strings.ContainsAny(tok, ", \t\r\n") {
				t.Fatalf("separator in token %q", tok)
			}
			n += len(strings.Map(keepNonSep, tok))
		}
		if want := len(strings.Map(keepNonSep, s)); n != want {
			t.Fatalf("%q: tokens %q keep %d non-separator bytes, want %d", s, toks, n, want)
		}
	})
}

func keepNonSep(r rune) rune {
	if strings.ContainsRune(", \t\r\n", r) {
		return -1
	}
	return r
}

// FuzzAccessAction: whatever an access table or policy server answers,
// the verdict is a permit, nothing, or a well-formed 4xx/5xx reply whose
// enhanced code agrees with it; never a panic.
func FuzzAccessAction(f *testing.F) {
	for _, s := range []string{
		"OK", "REJECT", "reject 5.7.9 go away", "DEFER 4.2.2 later", "450 4.1.1 no", "521 x", "699 x",
		"HOLD", "DISCARD text", "FILTER smtp:[x]", "REDIRECT a@b", "PREPEND X-A: b", "WARN w", "INFO i",
		"DEFER_IF_PERMIT", "DEFER_IF_REJECT t", "123", "permit_mynetworks reject", "a:b", "sleep",
		"check_client_access", "reject_rbl_client", "warn_if_reject reject", "DUNNO", "BCC a@b", "",
	} {
		f.Add(s)
	}
	// nested lists may ask DNS: a loopback server answers, never the network
	srv := dnsserver.Start(f, zone...)
	cfg := load(f, hbase+"dns_servers = "+srv.Addr()+"\nsmtpd_recipient_restrictions = permit\n")
	l, err := NewStandalone(cfg, maps.DefaultOptions(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	f.Fuzz(func(t *testing.T, value string) {
		if strings.Contains(strings.ToLower(value), "sleep") || strings.Contains(value, "policy") {
			return // would wait for real time or a server
		}
		s := l.NewSession(nil)
		s.Standalone = true
		v := &smtpd.View{ClientName: "localhost", ClientAddr: netip.MustParseAddr("127.0.0.1"), ClientNameStatus: 2,
			Helo: "h.test", Sender: "s@x.test", HasSender: true, Recipient: "r@y.test", Protocol: "SMTP"}
		e := &eval{s: s, l: l, ds: l.dns.Session(), ctx: context.Background(), v: v, d: &smtpd.Decision{}, where: "RCPT",
			helo: strp(v.Helo), sender: strp(v.Sender), recipient: strp(v.Recipient)}
		st := e.tableResult("inline:{x}", value, "r@y.test", "r@y.test", classRecipient, "check_recipient_access")
		if st != rejected {
			return
		}
		r := e.reply
		if r.Code < 400 || r.Code > 599 || len(r.Enhanced) < 5 || int(r.Enhanced[0]-'0') != r.Code/100 {
			t.Fatalf("%q: bad reply %q", value, r.String())
		}
		if strings.ContainsAny(r.String(), "\r\n") {
			t.Fatalf("%q: reply with a line break %q", value, r.String())
		}
	})
}

// FuzzListFilter: the DNS list reply filter never panics, and an exact
// filter matches its own address.
func FuzzListFilter(f *testing.F) {
	for _, s := range []string{"=127.0.0.2", "=127.0.0.[2..11]", "=127.0.[0;1].[2;4..6]", "&0.0.0.4", "=[..]", "=1.2.3", "&x", ""} {
		f.Add(s, "127.0.0.4")
	}
	f.Fuzz(func(t *testing.T, filter, value string) {
		l := &Lists{}
		l.matchFilter(filter, value)
		if a, err := netip.ParseAddr(value); err == nil && a.Is4() && !l.matchFilter("="+a.String(), a.String()) {
			t.Fatalf("=%s does not match itself", a)
		}
	})
}
