package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/config"
)

func loadConfig(t *testing.T, mainCF string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Postfix's defaults (postconf(5)) when main.cf says nothing.
func TestSettingsDefaults(t *testing.T) {
	s, err := SettingsFromConfig(config.Empty(t.TempDir()), "inet:127.0.0.1:10023")
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{
		Endpoint: "inet:127.0.0.1:10023", Timeout: 100 * time.Second, MaxIdle: 300 * time.Second,
		MaxTTL: 1000 * time.Second, TryLimit: 2, RequestLimit: 0, RetryDelay: time.Second,
		DefaultAction:      "451 4.3.5 Server configuration problem",
		CompatibilityLevel: s.CompatibilityLevel, MailVersion: config.Version,
	}
	if s != want {
		t.Errorf("got %+v\nwant %+v", s, want)
	}
}

// main.cf parameters, then the braced per-server options over them.
func TestSettingsOverrides(t *testing.T) {
	cfg := loadConfig(t, "smtpd_policy_service_timeout = 10s\nsmtpd_policy_service_try_limit = 3\n"+
		"smtpd_policy_service_request_limit = 7\nsmtpd_policy_service_policy_context = mx\n"+
		"smtpd_policy_service_default_action = DUNNO\nsmtpd_policy_service_max_idle = 1m\n")
	s, err := SettingsFromConfig(cfg, "unix:private/policy")
	if err != nil {
		t.Fatal(err)
	}
	if s.Timeout != 10*time.Second || s.TryLimit != 3 || s.RequestLimit != 7 || s.Context != "mx" ||
		s.DefaultAction != "DUNNO" || s.MaxIdle != time.Minute || s.Endpoint != "unix:private/policy" {
		t.Errorf("got %+v", s)
	}
	// smtpd_check.c's per-policy attr_override form, one list element as
	// config.SplitList leaves it.
	arg := config.SplitList("check_policy_service { inet:[::1]:9998, timeout=3s, max_ttl=20, " +
		"retry_delay=2s, try_limit=1, request_limit=0, { default_action = 450 4.7.1 Try again }, policy_context=sub }")[1]
	s, err = SettingsFromConfig(cfg, arg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Endpoint != "inet:[::1]:9998" || s.Timeout != 3*time.Second || s.MaxTTL != 20*time.Second ||
		s.RetryDelay != 2*time.Second || s.TryLimit != 1 || s.RequestLimit != 0 ||
		s.DefaultAction != "450 4.7.1 Try again" || s.Context != "sub" || s.MaxIdle != time.Minute {
		t.Errorf("got %+v", s)
	}
	if n, a, _ := s.dialTarget(); n != "tcp" || a != "[::1]:9998" {
		t.Errorf("dialTarget = %s %s", n, a)
	}
}

// Configuration errors name the problem; a daemon fails closed on them.
func TestSettingsErrors(t *testing.T) {
	cfg := config.Empty(t.TempDir())
	for arg, want := range map[string]string{
		"127.0.0.1:10023":                        "unsupported transport",
		"private/policy":                         "need service transport:endpoint",
		"inet:127.0.0.1":                         "need host:port",
		"inet::10023":                            "need host:port",
		"{ inet:127.0.0.1:1, timeout=0 }":        "timeout must be greater than zero",
		"{ inet:127.0.0.1:1, try_limit=0 }":      "try_limit must be greater",
		"{ inet:127.0.0.1:1, try_limit=x }":      "bad numerical value",
		"{ inet:127.0.0.1:1, bogus=1 }":          "unknown attribute name",
		"{ inet:127.0.0.1:1, timeout }":          "missing '='",
		"{ inet:127.0.0.1:1, timeout=3x }":       "timeout=3x",
		"{ inet:127.0.0.1:1":                     "missing '}'",
		"{ }":                                    "empty policy service",
		"{ inet:127.0.0.1:1, default_action=}":   "default_action must not be empty",
		"{ inet:127.0.0.1:1, request_limit=-1 }": "request_limit must not be negative",
	} {
		_, err := SettingsFromConfig(cfg, arg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", arg, err, want)
		}
	}
}
