package policy

import (
	"bufio"
	"strings"
	"testing"

	"moat/internal/config"
)

// FuzzReadReply feeds arbitrary server output to the reply parser: it must
// never panic, and whatever it accepts is one non-empty action of at most
// MaxReplyLine bytes with no newline in it.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"action=DUNNO\n\n",
		"action=DEFER_IF_PERMIT 4.2.0 Greylisted, see http://postgrey.schweikert.ch/help/x.html\n\n",
		"action=PREPEND X-Greylist: delayed 3 seconds\r\n\r\n",
		"foo=bar\naction=OK\n\n",
		"action=\n\n", "action\n\n", "\n", "", "action=OK", "action=OK\naction=OK\n\n",
		strings.Repeat("x=y\n", 70) + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(data)), 16)
		action, err := readReply(br)
		if err != nil {
			if action != "" {
				t.Fatalf("error %v with action %q", err, action)
			}
			return
		}
		if strings.TrimSpace(action) == "" || strings.ContainsAny(action, "\n") || len(action) > MaxReplyLine {
			t.Fatalf("accepted action %q", action)
		}
	})
}

// FuzzSettings feeds arbitrary check_policy_service arguments (plain and
// braced) to the settings parser: no panic, and accepted settings are
// valid.
func FuzzSettings(f *testing.F) {
	for _, s := range []string{
		"inet:127.0.0.1:10023", "unix:private/policy", "unix:/var/run/p",
		"{ inet:[::1]:9998, timeout=3s, max_ttl=20, try_limit=1 }",
		"{ inet:h:1, { default_action = 450 4.7.1 Try again }, policy_context=x }",
		"{ inet:h:1, bogus=1 }", "{", "{ }", "inet::", "local:x",
	} {
		f.Add(s)
	}
	cfg := config.Empty(f.TempDir())
	f.Fuzz(func(t *testing.T, arg string) {
		s, err := SettingsFromConfig(cfg, arg)
		if err != nil {
			if s != (Settings{}) {
				t.Fatalf("error %v with settings %+v", err, s)
			}
			return
		}
		if err := s.validate(); err != nil {
			t.Fatalf("accepted %q: %v", arg, err)
		}
	})
}
