package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeMain(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestParseSyntax(t *testing.T) {
	data := "# comment\n  # indented comment\n\na = one\n  two\n# inside\n\n\tthree\nb=x  \r\nc =\n a\n"
	entries, warnings, err := Parse("/m/main.cf", []byte(" lead = 1\n"+data))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{{"a", "one  two\tthree", 5}, {"b", "x", 10}, {"c", "a", 11}}
	if !reflect.DeepEqual(entries, want) {
		t.Errorf("entries = %#v, want %#v", entries, want)
	}
	if len(warnings) != 1 || warnings[0] != `/m/main.cf: logical line must not start with whitespace: " lead = 1"` {
		t.Errorf("warnings = %q", warnings)
	}
	for text, msg := range map[string]string{
		"a = 1\nfoo bar\n": `/m/main.cf, line 2: missing '=' after attribute name: "foo bar"`,
		"=bar\n":           `/m/main.cf, line 1: missing attribute name: "=bar"`,
		"a b = c\n":        `/m/main.cf, line 1: missing '=' after attribute name: "a b = c"`,
	} {
		if _, _, err := Parse("/m/main.cf", []byte(text)); err == nil || err.Error() != msg {
			t.Errorf("Parse(%q) error = %v, want %s", text, err, msg)
		}
	}
}

func TestLaterDefinitionWins(t *testing.T) {
	c, err := Load(writeMain(t, "myhostname = a.example\nmyhostname = b.example\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Get("myhostname"); got != "b.example" {
		t.Errorf("myhostname = %q", got)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "line 2: overriding earlier entry: myhostname=a.example") {
		t.Errorf("warnings = %q", w)
	}
}

func TestExpansionAndCompatibility(t *testing.T) {
	for _, tc := range []struct {
		level, style, relay, relayRestr string
	}{
		{"0", "subnet", "mx.example.com, localhost.example.com, localhost", ""},
		{"2", "host", "", "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"},
		{"3.6", "host", "", "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"},
	} {
		c, err := Load(writeMain(t, "myhostname = mx.example.com\ncompatibility_level = "+tc.level+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Get("mynetworks_style"); got != tc.style {
			t.Errorf("level %s: mynetworks_style = %q, want %q", tc.level, got, tc.style)
		}
		if got := c.Get("relay_domains"); got != tc.relay {
			t.Errorf("level %s: relay_domains = %q, want %q", tc.level, got, tc.relay)
		}
		if got := c.Get("smtpd_relay_restrictions"); tc.level != "0" && got != tc.relayRestr {
			t.Errorf("level %s: smtpd_relay_restrictions = %q", tc.level, got)
		}
	}
	// moat's own default level gives the relay-safe defaults.
	c, err := Load(writeMain(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Get("relay_domains"); got != "" {
		t.Errorf("default relay_domains = %q", got)
	}
	if got := c.Get("mynetworks_style"); got != "host" {
		t.Errorf("default mynetworks_style = %q", got)
	}
	if got := c.Get("smtpd_banner"); !strings.HasSuffix(got, " ESMTP") || strings.Contains(got, "moat") {
		t.Errorf("default smtpd_banner = %q", got)
	}
	if got := c.Get("mydomain"); got != domainOf(c.Get("myhostname")) {
		t.Errorf("mydomain = %q", got)
	}
}

func TestExpansionLoop(t *testing.T) {
	c, err := Open(writeMain(t, "a = $b\nb = $a\nsmtpd_banner = $a\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetErr("smtpd_banner")
	if err == nil || !strings.Contains(err.Error(), `unreasonable macro call nesting: "`) {
		t.Errorf("GetErr = %v", err)
	}
	if err := c.Check(); err == nil {
		t.Error("Check accepted a recursive definition")
	}
}

func TestTypedGetters(t *testing.T) {
	c, err := Load(writeMain(t, "smtpd_helo_required = YES\nmessage_size_limit = 52428800\nmaximal_queue_lifetime = 2\n"+
		"smtpd_timeout = 5m\nmydestination = a, b  c,{ d, e }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := c.Bool("smtpd_helo_required"); err != nil || !b {
		t.Errorf("Bool = %v, %v", b, err)
	}
	if n, err := c.Size("message_size_limit"); err != nil || n != 52428800 {
		t.Errorf("Size = %v, %v", n, err)
	}
	if d, err := c.Duration("maximal_queue_lifetime"); err != nil || d != 48*time.Hour {
		t.Errorf("Duration(maximal_queue_lifetime) = %v, %v (default unit is days)", d, err)
	}
	if d, err := c.Duration("smtpd_timeout"); err != nil || d != 5*time.Minute {
		t.Errorf("Duration(smtpd_timeout) = %v, %v", d, err)
	}
	if l, err := c.List("mydestination"); err != nil || !reflect.DeepEqual(l, []string{"a", "b", "c", "{ d, e }"}) {
		t.Errorf("List = %q, %v", l, err)
	}
	if d, err := c.Duration("smtpd_starttls_timeout"); err != nil || d != 300*time.Second {
		t.Errorf("Duration(smtpd_starttls_timeout) = %v, %v", d, err)
	}
}

func TestWithOverrides(t *testing.T) {
	c, err := Load(writeMain(t, "smtpd_sasl_auth_enable = no\nsmtpd_client_restrictions = permit_mynetworks\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.WithOverrides(map[string]string{"smtpd_sasl_auth_enable": "yes", "smtpd_client_restrictions": ""})
	if b, _ := s.Bool("smtpd_sasl_auth_enable"); !b {
		t.Error("override not applied")
	}
	if got := s.Get("smtpd_client_restrictions"); got != "" {
		t.Errorf("override to empty = %q", got)
	}
	if b, _ := c.Bool("smtpd_sasl_auth_enable"); b {
		t.Error("WithOverrides changed the original")
	}
}

func TestBadValues(t *testing.T) {
	_, err := Load(writeMain(t, "smtpd_helo_required = maybe\nmessage_size_limit = 10k\nsmtpd_timeout = 5x\n"+
		"smtpd_tls_security_level = sometimes\nmynetworks_style = $myhostname\nsmtpd_banner = ${oops\n"))
	if err == nil {
		t.Fatal("Load accepted bad values")
	}
	for _, want := range []string{
		`main.cf, line 1: parameter smtpd_helo_required: bad value "maybe": expected yes or no`,
		`main.cf, line 2: parameter message_size_limit: bad value "10k": expected an integer`,
		`main.cf, line 3: parameter smtpd_timeout: bad value "5x": expected a time unit`,
		`main.cf, line 4: parameter smtpd_tls_security_level: bad value "sometimes": expected one of`,
		`main.cf, line 5: parameter mynetworks_style: bad value "`,
		`main.cf, line 6: parameter smtpd_banner: bad value "${oops": truncated macro reference`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestObsoleteRestrictionsLoad: the restrictions Postfix 3.9 removed load,
// in lists and classes alike; they answer 451 4.3.5 when reached
// (internal/restrict), as Postfix 3.9 does.
func TestObsoleteRestrictionsLoad(t *testing.T) {
	if _, err := Load(writeMain(t, "smtpd_restriction_classes = old\nold = check_relay_domains\nsmtpd_recipient_restrictions = permit_naked_ip_address, old, reject_maps_rbl\n")); err != nil {
		t.Fatalf("Load refused obsolete restrictions: %v", err)
	}
}

func TestUnusedAndUndefined(t *testing.T) {
	c, err := Load(writeMain(t, "foo = bar\nx = $foo\nsmtpd_banner = $nope\nsmtpd_restriction_classes = cls\ncls = permit\n"+
		"forward_path = $raw_ref\nraw_ref = 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"undefined parameter: nope", "unused parameter: x=$foo", "unused parameter: raw_ref=1"} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"foo=bar", "cls=permit"} {
		if strings.Contains(got, not) {
			t.Errorf("warnings mention used %q:\n%s", not, got)
		}
	}
	if got := c.Get("forward_path"); got != "$raw_ref" {
		t.Errorf("raw parameter expanded: %q", got)
	}
}

func TestTable(t *testing.T) {
	tab := NewTable()
	if n := len(tab.Names()); n < 800 {
		t.Errorf("table has %d parameters", n)
	}
	for _, s := range SaferDefaults() {
		p, ok := tab.Lookup(s.Name)
		if !ok {
			t.Errorf("safer default %s is not a Postfix parameter", s.Name)
			continue
		}
		if p.Default != s.Value {
			t.Errorf("%s default = %q", s.Name, p.Default)
		}
		if err := p.Validate(s.Value); err != nil && !strings.Contains(s.Value, "$") {
			t.Errorf("safer default %s = %q fails validation: %v", s.Name, s.Value, err)
		}
	}
	for _, o := range ObsoleteParams() {
		if IsSaferDefault(o.Name) {
			t.Errorf("%s is both obsolete and a safer default", o.Name)
		}
	}
}

func TestSplitList(t *testing.T) {
	for in, want := range map[string][]string{
		"":           nil,
		"a,b c\t\nd": {"a", "b", "c", "d"},
		" , a ,, b ": {"a", "b"},
		"check_client_access {inline:{ a=b, c=d }}, x": {"check_client_access", "{inline:{ a=b, c=d }}", "x"},
		"unbalanced { a b": {"unbalanced", "{ a b"},
	} {
		if got := SplitList(in); !reflect.DeepEqual(got, want) {
			t.Errorf("SplitList(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckOverride(t *testing.T) {
	c, err := Load(writeMain(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, value, want string }{
		{"smtpd_sasl_auth_enable", "yes", ""},
		{"smtpd_recipient_restrictions", "permit_sasl_authenticated,reject", ""},
		{"smtpd_tls_security_level", "sometimes", `parameter smtpd_tls_security_level: bad value "sometimes": expected one of`},
		{"smtpd_client_restrictions", "reject_maps_rbl", ""},
		{"smtpd_tls_dcert_file", "/x", "parameter smtpd_tls_dcert_file is obsolete: use smtpd_tls_eccert_file"},
		{"unknown_name", "anything", ""},
	} {
		err := c.CheckOverride(tc.name, tc.value)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckOverride(%s, %s) = %v, want %q", tc.name, tc.value, err, tc.want)
		}
	}
}

// TestServiceNameInOverride: Debian's stock master.cf says
// "-o syslog_name=postfix/$service_name"; the daemon's view expands it.
func TestServiceNameInOverride(t *testing.T) {
	c, err := Load(writeMain(t, "syslog_name = postfix\n"))
	if err != nil {
		t.Fatal(err)
	}
	v := c.WithOverrides(map[string]string{"syslog_name": "postfix/$service_name", "service_name": "submission"})
	if got := v.Get("syslog_name"); got != "postfix/submission" {
		t.Errorf("syslog_name = %q", got)
	}
}
