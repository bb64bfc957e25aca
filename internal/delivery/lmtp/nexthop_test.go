package lmtp

import (
	"errors"
	"strings"
	"testing"

	"moat/internal/config"
	"moat/internal/delivery"
)

func TestParseNexthop(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Nexthop
	}{
		{"unix:/run/dovecot/lmtp", Nexthop{Unix: true, Path: "/run/dovecot/lmtp", Dial: "/run/dovecot/lmtp"}},
		{"unix:private/dovecot-lmtp", Nexthop{Unix: true, Path: "private/dovecot-lmtp", Dial: "/var/spool/postfix/private/dovecot-lmtp"}},
		{"UNIX:private/x", Nexthop{Unix: true, Path: "private/x", Dial: "/var/spool/postfix/private/x"}},
		{"inet:localhost:2424", Nexthop{Host: "localhost", Port: 2424}},
		{"inet:127.0.0.1", Nexthop{Host: "127.0.0.1", Port: 24}},
		{"inet:[::1]:24", Nexthop{Host: "::1", Port: 24}},
		{"inet:[::1]", Nexthop{Host: "::1", Port: 24}},
		{"mail.example.com", Nexthop{Host: "mail.example.com", Port: 24}},
		{"mail.example.com:10024", Nexthop{Host: "mail.example.com", Port: 10024}},
		{"[192.0.2.1]:25", Nexthop{Host: "192.0.2.1", Port: 25}},
		{"[mail.example.com]", Nexthop{Host: "mail.example.com", Port: 24}},
		{"::1", Nexthop{Host: "::1", Port: 24}},
		{"inet:localhost:smtp", Nexthop{Host: "localhost", Port: 25}},
	} {
		got, err := ParseNexthop(tc.in, 24, "/var/spool/postfix")
		if err != nil || got != tc.want {
			t.Errorf("ParseNexthop(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"", "unix:", "inet:", "inet:host:", "inet:host:0", "inet:host:65536", "[::1", "[::1]x",
		"[::1]:", "host:no-such-service-xyz", "ho st", "a@b", "inet::24", "[]:24", "unix:a\x00b",
	} {
		if got, err := ParseNexthop(bad, 24, "/q"); !errors.Is(err, ErrNexthop) {
			t.Errorf("ParseNexthop(%q) = %+v, %v; want ErrNexthop", bad, got, err)
		}
	}
}

func FuzzParseNexthop(f *testing.F) {
	for _, s := range []string{"unix:private/dovecot-lmtp", "inet:[::1]:24", "host:24", "[h]", "inet:h:smtp", "::1", "unix:/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		nh, err := ParseNexthop(s, 24, "/q")
		if err != nil {
			if !errors.Is(err, ErrNexthop) {
				t.Fatalf("%q: error %v is not ErrNexthop", s, err)
			}
			return
		}
		if nh.Unix {
			if nh.Path == "" || !strings.HasPrefix(nh.Dial, "/") {
				t.Fatalf("%q: %+v", s, nh)
			}
			return
		}
		if nh.Host == "" || nh.Port < 1 || nh.Port > 65535 || strings.ContainsAny(nh.Host, "[] \r\n") {
			t.Fatalf("%q: %+v", s, nh)
		}
		// The rendered form parses back to the same destination.
		again, err := ParseNexthop(nh.String(), 24, "/q")
		if err != nil || again != nh {
			t.Fatalf("%q: %+v renders %q, which parses as %+v, %v", s, nh, nh.String(), again, err)
		}
	})
}

// TestTLSAndSASLRefused: settings that ask lmtp(8) to encrypt or log in
// stop the agent at start instead of being ignored (mail then waits in
// the queue), while the defaults and level none start it.
func TestTLSAndSASLRefused(t *testing.T) {
	for _, over := range []map[string]string{
		{"lmtp_sasl_auth_enable": "yes"},
		{"lmtp_tls_security_level": "encrypt"},
		{"lmtp_tls_security_level": "may"},
		{"lmtp_use_tls": "yes"},
		{"lmtp_enforce_tls": "yes"},
	} {
		o := map[string]string{"myhostname": testHost, "queue_directory": t.TempDir()}
		for k, v := range over {
			o[k] = v
		}
		if a, err := New(delivery.Deps{Config: config.Empty(t.TempDir()).WithOverrides(o), Service: "lmtp"}); err == nil {
			a.Close()
			t.Errorf("%v: the agent started", over)
		} else if !strings.Contains(err.Error(), "not implemented yet") {
			t.Errorf("%v: %v", over, err)
		}
	}
	newAgent(t, t.TempDir(), map[string]string{"lmtp_tls_security_level": "none"})
}
