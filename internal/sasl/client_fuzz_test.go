package sasl

import (
	"strings"
	"testing"
)

// FuzzClient feeds a server's EHLO AUTH parameters, a password table
// value and a series of challenges (separated by newlines) to the client
// side: whatever the server sends, the client chooses only a mechanism
// that was offered and allowed, never panics, and never answers more
// challenges than its mechanism has steps.
func FuzzClient(f *testing.F) {
	f.Add("PLAIN LOGIN CRAM-MD5", "alice@example.org:pw", "<1896.697170952@postoffice.example.net>")
	f.Add("login", "u:p:q", "VXNlcm5hbWU6\nUGFzc3dvcmQ6\nextra")
	f.Add("CRAM-MD5 SCRAM-SHA-256", "user", "")
	f.Add("", ":", "\x00\n\n")
	f.Fuzz(func(t *testing.T, offered, value, challenges string) {
		user, pass := ParseClientPassword(value)
		if !strings.HasPrefix(value, user) {
			t.Fatalf("user %q not a prefix of %q", user, value)
		}
		opts, _ := ParseSecurityOptions("noanonymous")
		mech := ChooseClientMech(strings.Fields(offered), opts)
		if mech == "" {
			return
		}
		found := false
		for _, m := range strings.Fields(offered) {
			found = found || strings.EqualFold(m, mech)
		}
		if !found {
			t.Fatalf("chose %q, not offered in %q", mech, offered)
		}
		c, err := NewClient(mech, user, pass)
		if err != nil {
			return
		}
		c.Initial()
		answered := 0
		for _, ch := range strings.Split(challenges, "\n") {
			if _, err := c.Next([]byte(ch)); err == nil {
				answered++
			}
		}
		if answered > 2 {
			t.Fatalf("%s answered %d challenges", mech, answered)
		}
	})
}
