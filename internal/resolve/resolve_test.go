package resolve

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"moat/internal/config/configtest"
	"moat/internal/maps"
)

// base is what every test's main.cf starts with: fixed names, so the
// defaults that refer to them ($myhostname, $mydomain) do not depend on the
// machine.
const base = "myhostname = mail.example.com\nmydomain = example.com\ninet_interfaces = loopback-only\n"

func load(t *testing.T, mainCF string) (*Resolver, *[]string) {
	t.Helper()
	cfg := configtest.Load(t, base+mainCF)
	var warnings []string
	opts := maps.DefaultOptions()
	opts.Warn = func(m string) { warnings = append(warnings, m) }
	r, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r, &warnings
}

type want struct {
	domain  string
	class   Class
	invalid bool
	as      string // Result.Domain when it differs from the input
}

func expect(t *testing.T, r *Resolver, cases []want) {
	t.Helper()
	for _, w := range cases {
		res, err := r.Resolve(w.domain)
		if err != nil {
			t.Errorf("Resolve(%q): %v", w.domain, err)
			continue
		}
		if res.Class != w.class || res.Invalid != w.invalid {
			t.Errorf("Resolve(%q) = %v invalid=%v, want %v invalid=%v", w.domain, res.Class, res.Invalid, w.class, w.invalid)
		}
		if w.as != "" && res.Domain != w.as {
			t.Errorf("Resolve(%q).Domain = %q, want %q", w.domain, res.Domain, w.as)
		}
		if c, err := r.Domain(w.domain); err != nil || c != w.class {
			t.Errorf("Domain(%q) = %v, %v", w.domain, c, err)
		}
	}
}

// The defaults: mydestination = $myhostname, localhost.$mydomain, localhost;
// relay_domains empty (compatibility level 3.6); no virtual domains.
func TestDefaults(t *testing.T) {
	r, warnings := load(t, "")
	expect(t, r, []want{
		{"", Local, false, ""},
		{"mail.example.com", Local, false, ""},
		{"MAIL.Example.COM", Local, false, ""},
		{"mail.example.com.", Local, false, "mail.example.com"},
		{"localhost", Local, false, ""},
		{"localhost.example.com", Local, false, ""},
		{"example.com", Default, false, ""},
		{"sub.mail.example.com", Default, false, ""}, // mydestination has no parent matching
		{"mail.example.com..", Default, true, ""},
		{".", Default, true, ""},
		{"-bad-.example", Default, true, ""},
		{"a b", Default, true, ""},
	})
	if len(*warnings) != 0 {
		t.Errorf("warnings: %q", *warnings)
	}
}

// Address literals are local when they name one of this host's interfaces
// (inet_interfaces) or proxy_interfaces; bare numbers only with
// resolve_numeric_domain.
func TestAddressLiterals(t *testing.T) {
	r, _ := load(t, "proxy_interfaces = 192.0.2.7, [2001:db8::7]\n")
	expect(t, r, []want{
		{"[127.0.0.1]", Local, false, ""},
		{"[IPv6:::1]", Local, false, ""},
		{"[ipv6:0:0:0:0:0:0:0:1]", Local, false, ""},
		{"[IPv6:::ffff:127.0.0.1]", Local, false, ""},
		{"[192.0.2.7]", Local, false, ""},
		{"[IPv6:2001:db8::7]", Local, false, ""},
		{"[127.0.0.1].", Local, false, "[127.0.0.1]"},
		{"[192.0.2.8]", Default, false, ""},
		{"[::1]", Default, true, ""}, // RFC 5321 wants the IPv6: tag
		{"[300.0.0.1]", Default, true, ""},
		{"[127.0.0.1", Default, true, ""},
		{"127.0.0.1", Default, true, ""}, // resolve_numeric_domain = no
		{"192.0.2.7", Default, true, ""},
	})
	if !r.IsOwnAddr(netip.MustParseAddr("::ffff:192.0.2.7")) || r.IsOwnAddr(netip.MustParseAddr("192.0.2.8")) {
		t.Error("IsOwnAddr")
	}

	num, _ := load(t, "resolve_numeric_domain = yes\n")
	expect(t, num, []want{
		{"127.0.0.1", Local, false, ""},
		{"::1", Local, false, ""},
		{"192.0.2.1", Default, false, "[192.0.2.1]"},
		{"1.2.3", Default, true, ""},
	})
}

func TestInterfaces(t *testing.T) {
	all, _ := load(t, "inet_interfaces = all\n")
	if !all.IsOwnAddr(netip.MustParseAddr("127.0.0.1")) {
		t.Error("inet_interfaces = all does not include the loopback interface")
	}
	v4, _ := load(t, "inet_protocols = ipv4\n")
	expect(t, v4, []want{{"[127.0.0.1]", Local, false, ""}, {"[IPv6:::1]", Default, false, ""}})
	named, _ := load(t, "inet_interfaces = localhost 192.0.2.1\n")
	expect(t, named, []want{{"[127.0.0.1]", Local, false, ""}, {"[192.0.2.1]", Local, false, ""}, {"[192.0.2.2]", Default, false, ""}})

	cfg := configtest.Load(t, base+"proxy_interfaces = all\n")
	if _, err := New(cfg, maps.DefaultOptions()); err == nil || !strings.Contains(err.Error(), "proxy_interfaces") {
		t.Errorf("proxy_interfaces = all: %v", err)
	}
}

// Each class by its own list, in trivial-rewrite's precedence;
// virtual_alias_domains defaults to $virtual_alias_maps, where a domain counts
// when the table has the domain itself as a key.
func TestClasses(t *testing.T) {
	r, warnings := load(t, ""+
		"mydestination = $myhostname, localhost, inline:{local.example=x}\n"+
		"virtual_alias_maps = inline:{valias.example=ignored, user@valias2.example=u}\n"+
		"virtual_mailbox_domains = vm.example, Vm2.Example\n"+
		"relay_domains = relay.example\n")
	expect(t, r, []want{
		{"local.example", Local, false, ""},
		{"valias.example", VirtualAlias, false, ""},
		{"VAlias.example.", VirtualAlias, false, "VAlias.example"},
		{"valias2.example", Default, false, ""}, // only user@ keys: not a domain entry
		{"sub.valias.example", Default, false, ""},
		{"vm.example", VirtualMailbox, false, ""},
		{"vm2.example", VirtualMailbox, false, ""},
		{"sub.vm.example", Default, false, ""},
		{"relay.example", RelayDomain, false, ""},
		{"mx.relay.example", RelayDomain, false, ""}, // relay_domains: parent matching by default
		{"example.org", Default, false, ""},
	})
	if len(*warnings) != 0 {
		t.Errorf("warnings: %q", *warnings)
	}

	strict, _ := load(t, "relay_domains = relay.example .relay.example\nparent_domain_matches_subdomains =\n")
	expect(t, strict, []want{{"relay.example", RelayDomain, false, ""}, {"mx.relay.example", RelayDomain, false, ""}})

	// Before compatibility level 2, relay_domains defaulted to $mydestination.
	old, _ := load(t, "compatibility_level = 0\n")
	expect(t, old, []want{{"mail.example.com", Local, false, ""}, {"mx.mail.example.com", RelayDomain, false, ""}})
}

// A domain in two classes keeps the first and draws Postfix's warning, once
// per lookup, through opts.Warn; helpful_warnings = no silences it.
func TestBothWarnings(t *testing.T) {
	cf := "mydestination = $myhostname, dup.example\n" +
		"virtual_alias_domains = dup.example, va.example\n" +
		"virtual_mailbox_domains = dup.example, va.example, vm.example\n" +
		"relay_domains = va.example, vm.example\n"
	r, warnings := load(t, cf)
	for _, tc := range []struct {
		domain string
		class  Class
		warns  []string
	}{
		{"dup.example", Local, []string{
			"do not list domain dup.example in BOTH mydestination and virtual_alias_domains",
			"do not list domain dup.example in BOTH mydestination and virtual_mailbox_domains",
		}},
		{"va.example", VirtualAlias, []string{
			"do not list domain va.example in BOTH virtual_alias_domains and virtual_mailbox_domains",
			"do not list domain va.example in BOTH virtual_alias_domains and relay_domains",
		}},
		{"vm.example", VirtualMailbox, []string{
			"do not list domain vm.example in BOTH virtual_mailbox_domains and relay_domains",
		}},
	} {
		*warnings = nil
		res, err := r.Resolve(tc.domain)
		if err != nil || res.Class != tc.class || !slices.Equal(res.Warnings, tc.warns) {
			t.Errorf("Resolve(%q) = %+v, %v; want %v with %q", tc.domain, res, err, tc.class, tc.warns)
		}
		if c, err := r.Domain(tc.domain); err != nil || c != tc.class || !slices.Equal(*warnings, tc.warns) {
			t.Errorf("Domain(%q) = %v, %v, warned %q", tc.domain, c, err, *warnings)
		}
	}
	quiet, qw := load(t, cf+"helpful_warnings = no\n")
	if c, err := quiet.Domain("dup.example"); err != nil || c != Local || len(*qw) != 0 {
		t.Errorf("helpful_warnings = no: %v %v %q", c, err, *qw)
	}
}

// A failing table is an error (the caller defers), never a class.
func TestLookupFailure(t *testing.T) {
	for _, param := range []string{"mydestination", "virtual_alias_domains", "virtual_mailbox_domains", "relay_domains"} {
		r, _ := load(t, param+" = fail:down\n")
		_, err := r.Domain("example.org")
		if err == nil || !strings.Contains(err.Error(), param+" lookup failure") {
			t.Errorf("%s = fail:down: %v", param, err)
		}
	}
	// A bare user never reaches a table.
	r, _ := load(t, "mydestination = fail:down\n")
	if c, err := r.Domain(""); err != nil || c != Local {
		t.Errorf("bare user: %v %v", c, err)
	}
}

func TestBadConfig(t *testing.T) {
	cfg := configtest.Load(t, base+"relay_domains = /nonexistent/file\n")
	if _, err := New(cfg, maps.DefaultOptions()); err == nil || !strings.Contains(err.Error(), "relay_domains: open file /nonexistent/file") {
		t.Errorf("missing relay_domains file: %v", err)
	}
}

func TestClassString(t *testing.T) {
	for c, s := range map[Class]string{Local: "local", VirtualAlias: "virtual alias", VirtualMailbox: "virtual mailbox", RelayDomain: "relay", Default: "default", Class(9): "Class(9)"} {
		if c.String() != s {
			t.Errorf("%d: %q", int(c), c.String())
		}
	}
	if !Local.Final() || !VirtualMailbox.Final() || RelayDomain.Final() || Default.Final() {
		t.Error("Final")
	}
}

// IsLocal is resolve_local(): mydestination and own address literals, one
// trailing dot ignored; other classes are not local.
func TestIsLocal(t *testing.T) {
	r, _ := load(t, "mydestination = $myhostname\nvirtual_alias_domains = virt.example\n")
	for d, want := range map[string]bool{
		"mail.example.com": true, "MAIL.example.com.": true, "[127.0.0.1]": true,
		"virt.example": false, "example.com": false, "[192.0.2.1]": false, "": false,
	} {
		if got, err := r.IsLocal(d); err != nil || got != want {
			t.Errorf("IsLocal(%q) = %v, %v; want %v", d, got, err, want)
		}
	}
}
