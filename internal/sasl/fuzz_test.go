package sasl

import (
	"strings"
	"testing"
)

// FuzzParseCredentials: a table value (written by an admin or a tool) never
// panics, and bounded parameters keep verification cheap.
func FuzzParseCredentials(f *testing.F) {
	for _, s := range []string{dovecotCRAM, dovecotSCRAM, dovecotArgon, dovecotBcrypt, "{X}y", "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, err := ParseCredentials(v)
		if err != nil {
			return
		}
		// Bounded by the parameter limits; argon2 at up to 1 GiB would
		// be slow, so only cheap entries are verified here.
		for _, h := range c.hashes {
			if a, err := parseArgon2id(h); err == nil && a.m > 1024 {
				return
			}
			if strings.HasPrefix(h, "$2") {
				return
			}
		}
		if c.scram != nil && c.scram.iter > 5000 {
			return
		}
		c.VerifyPassword([]byte("x"))
	})
}

// FuzzDovecotLines: what the auth server sends (reply lines and handshake
// lines) never panics the client.
func FuzzDovecotLines(f *testing.F) {
	for _, s := range []string{"OK\t1\tuser=a", "FAIL\t1\treason=x\ttemp", "CONT\t1\tVXNlcm5hbWU6", "VERSION\t1\t2", "MECH\tPLAIN\tplaintext", "DONE", "MECH\tX\tprivate", "FAIL\t1\tuser=\001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if r, err := ParseDovecotReply(line); err == nil && r.ID == "" {
			t.Fatal("reply without an id")
		}
		var h handshake
		_ = h.add(line)
		_ = tabUnescape(line)
	})
}

// FuzzSASLMessages: PLAIN messages and SCRAM client messages from the
// network.
func FuzzSASLMessages(f *testing.F) {
	for _, s := range []string{"\x00u\x00p", "a\x00b\x00c", "n,,n=user,r=abc", "y,a=x,n=x,r=y", "p=x,,n=a,r=b", "n,,n=a=2Cb=3D,r=x,e=1", "n,,n=a=2,r=x", "c=biws,r=x,p=AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, m string) {
		if _, authc, pw, err := ParsePlain([]byte(m)); err == nil && (authc == "" || len(pw) == 0) {
			t.Fatal("empty identity or password accepted")
		}
		if cf, err := ParseSCRAMClientFirst(m); err == nil && (cf.User == "" || cf.Nonce == "") {
			t.Fatal("empty user or nonce accepted")
		}
		_, _, _ = parseSCRAMClientFinal(m, "n,,", "x")
	})
}
