package smtp

import (
	"testing"

	"moat/internal/tlsconf"
)

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"verify match=hostname:nexthop", "secure match=.example.com:dot-nexthop",
		"encrypt protocols=>=TLSv1.2 ciphers=high", "may", "none", "dane", "dane-only", "fingerprint match=AA:BB", "verify match=", "x=y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			return
		}
		if p.Level < tlsconf.ClientNone || p.Level > tlsconf.ClientDaneOnly {
			t.Fatalf("%q: level %d", s, p.Level)
		}
		if len(p.Match) > 0 && p.Level != tlsconf.ClientVerify && p.Level != tlsconf.ClientSecure {
			t.Fatalf("%q: match at level %s", s, p.Level)
		}
	})
}
