package mtasts

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/dns"
)

func TestMatchMX(t *testing.T) {
	for _, tc := range []struct {
		pattern, mx string
		want        bool
	}{
		{"mail.example.com", "mail.example.com", true},
		{"mail.example.com", "MAIL.Example.COM.", true},
		{"Mail.Example.com", "mail.example.com", true},
		{"mail.example.com", "mail2.example.com", false},
		{"mail.example.com", "example.com", false},
		{"*.example.com", "mx1.example.com", true},
		{"*.example.com", "MX1.EXAMPLE.COM.", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.example.com", "mx1.example.com.evil", false},
		{"*.example.com", "mx1example.com", false},
		{"*.mail.example.com", "mx.mail.example.com", true},
		{"*.mail.example.com", "mx.example.com", false},
		{"*.example.com", "*.example.com", true},
		{"", "example.com", false},
		{"example.com", "", false},
	} {
		if got := MatchMX(tc.pattern, tc.mx); got != tc.want {
			t.Errorf("MatchMX(%q, %q) = %v, want %v", tc.pattern, tc.mx, got, tc.want)
		}
	}
	var p *Policy
	if p.Match("mail.example.com") || p.Enforce() {
		t.Error("a nil policy matches or enforces")
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		text   string
		mode   Mode
		mx     []string
		maxAge time.Duration
		err    string
	}{
		{text: "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET\r\nmax_age: 604800\r\n",
			mode: Enforce, mx: []string{"mail.example.com", "*.example.net"}, maxAge: 604800 * time.Second},
		// LF lines, no final newline, blanks after the colon and at line
		// ends, unknown keys, a repeated key (the first counts).
		{text: "version:STSv1\nmode:   testing \nfoo: bar baz\nmx: a.example\nmode: enforce\nmax_age: 0",
			mode: Testing, mx: []string{"a.example"}},
		{text: "version: STSv1\nmode: none\nmax_age: 1\n", mode: None, maxAge: time.Second},
		// Above a year is a year.
		{text: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n",
			mode: Enforce, mx: []string{"a.example"}, maxAge: MaxMaxAge},
		{text: "", err: "no version"},
		{text: "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", err: "not STSv1"},
		{text: "Version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", err: "no version"},
		{text: "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", err: "unknown mode"},
		{text: "version: STSv1\nmode: enforce\nmx: a.example\n", err: "no max_age"},
		{text: "version: STSv1\nmx: a.example\nmax_age: 1\n", err: "no mode"},
		{text: "version: STSv1\nmode: testing\nmax_age: 1\n", err: "without mx"},
		{text: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", err: "bad max_age"},
		{text: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n", err: "bad max_age"},
		{text: "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", err: "bad mx"},
		{text: "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", err: "bad mx"},
		{text: "version: STSv1\nmode: enforce\nmx: -a.example\nmax_age: 1\n", err: "bad mx"},
		{text: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\ngarbage\n", err: "no \":\""},
		{text: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n_x: y\n", err: "malformed field"},
	} {
		p, err := ParsePolicy(tc.text)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePolicy(%q) = %+v, %v; want error with %q", tc.text, p, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePolicy(%q): %v", tc.text, err)
			continue
		}
		if p.Mode != tc.mode || !reflect.DeepEqual(p.MX, tc.mx) || p.MaxAge != tc.maxAge || p.Text != tc.text {
			t.Errorf("ParsePolicy(%q) = %+v", tc.text, p)
		}
	}
}

func TestParseTXT(t *testing.T) {
	for _, tc := range []struct {
		in, id string
		ok     bool
	}{
		{"v=STSv1; id=20160831085700Z;", "20160831085700Z", true},
		{"v=STSv1;id=abc", "abc", true},
		{"v=STSv1 ; id=abc ; x-y.z=1", "abc", true},
		{"v=STSv1; x=1; id=ABC123", "ABC123", true},
		{"v=STSv1; id=12345678901234567890123456789012", "12345678901234567890123456789012", true},
		{"v=STSv1; id=123456789012345678901234567890123", "", false},
		{"v=STSv1; id=", "", false},
		{"v=STSv1; id=a b", "", false},
		{"v=STSv1; id=a; id=b", "", false},
		{"v=STSv1;; id=a", "", false},
		{"v=STSv1; x=; id=a", "", false},
		{"v=STSv1; -x=1; id=a", "", false},
		{"v=STSv1", "", false},
		{"v=STSv1x; id=a", "", false},
		{"v=STSv10; id=a", "", false},
		{"V=STSv1; id=a", "", false},
		{" v=STSv1; id=a", "", false},
	} {
		id, err := ParseTXT(tc.in)
		if (err == nil) != tc.ok || id != tc.id {
			t.Errorf("ParseTXT(%q) = %q, %v; want %q ok=%v", tc.in, id, err, tc.id, tc.ok)
		}
	}
}

func TestFromConfig(t *testing.T) {
	r, err := dns.New(dns.Options{Servers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := FromConfig(cfg, r, nil); s != nil || err != nil {
		t.Fatalf("default: FromConfig = %v, %v; want off", s, err)
	}
	if v := cfg.Get("smtp_mta_sts_cache_directory"); v != "/var/lib/postfix/mta-sts" {
		t.Errorf("smtp_mta_sts_cache_directory = %q", v)
	}

	ps := startPolicyServer(t, "mta-sts.example.test", enforcePolicy)
	main := "data_directory = " + dir + "/data\nsmtp_mta_sts = yes\nsmtp_mta_sts_CAfile = " + ps.caFile + "\nsmtp_mta_sts_timeout = 3s\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, err = config.Load(dir); err != nil {
		t.Fatal(err)
	}
	s, err := FromConfig(cfg, r, nil)
	if err != nil || s == nil {
		t.Fatalf("FromConfig = %v, %v", s, err)
	}
	if s.dir != dir+"/data/mta-sts" || s.timeout != 3*time.Second || s.port != 443 {
		t.Errorf("Source dir %q timeout %v port %d", s.dir, s.timeout, s.port)
	}

	// A CA file without certificates is a start-up error, not silently
	// the system roots.
	bad := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(bad, []byte("nothing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("smtp_mta_sts = yes\nsmtp_mta_sts_CAfile = "+bad+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, err = config.Load(dir); err != nil {
		t.Fatal(err)
	}
	if s, err := FromConfig(cfg, r, nil); err == nil {
		t.Fatalf("FromConfig with an empty CA file = %v, nil", s)
	}
}
