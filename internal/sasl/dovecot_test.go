package sasl

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"moat/internal/testutil/dovecot"
)

// The real Dovecot (Debian's dovecot-core) on its unix socket and its inet
// listener: PLAIN, LOGIN and CRAM-MD5, right and wrong.
func TestDovecotReal(t *testing.T) {
	s := dovecot.Start(t, dovecot.Options{Users: map[string]string{"alice@example.com": "pw1"}})
	for _, path := range []string{s.AuthSocket, "unix:" + s.AuthSocket, "inet:" + s.AuthAddr} {
		t.Run(path, func(t *testing.T) {
			d, err := NewDovecot(path, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := d.Mechanisms(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]Flags{}
			for _, m := range ms {
				got[m.Name] = m.Flags
			}
			if got[Plain]&FlagPlaintext == 0 || got[Login]&FlagPlaintext == 0 || got[CRAMMD5]&FlagDictionary == 0 {
				t.Errorf("mechanisms %v", ms)
			}
			if path != s.AuthSocket {
				// Dovecot delays each failure; the other
				// listeners get one success each.
				if _, err := run(t, start(t, d, Plain), lit("\x00alice@example.com\x00pw1")); err != nil {
					t.Errorf("PLAIN: %v", err)
				}
				return
			}
			testMechanisms(t, d, "alice@example.com")
			// Postfix's reason for a FAIL without one is the last
			// challenge: LOGIN's "Password:".
			ex := start(t, d, Login)
			_, err = run(t, ex, none, lit("alice@example.com"), lit("bad"))
			if f := AsFailure(err); f == nil || f.Reason != "UGFzc3dvcmQ6" {
				t.Errorf("LOGIN failure %v", err)
			}
			if ex.User() != "alice@example.com" {
				t.Errorf("user after failure %q", ex.User())
			}
			if _, err := d.Start(context.Background(), "DIGEST-MD5", ConnInfo{}); err != ErrNoMech {
				t.Errorf("DIGEST-MD5: %v", err)
			}
		})
	}
	// rip/lip/secured reach Dovecot (it would refuse malformed ones).
	d, _ := NewDovecot(s.AuthSocket, 10*time.Second)
	ex, err := d.Start(context.Background(), Plain, ConnInfo{Service: "smtp", ClientAddr: netip.MustParseAddr("192.0.2.7"), ClientPort: 4567,
		LocalAddr: netip.MustParseAddr("::1"), LocalPort: 25, Secured: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	if _, err := run(t, ex, lit("\x00alice@example.com\x00pw1")); err != nil {
		t.Errorf("with connection info: %v", err)
	}
}

func TestDovecotDown(t *testing.T) {
	d, err := NewDovecot(t.TempDir()+"/nothing", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Mechanisms(context.Background()); err == nil {
		t.Error("no error without a server")
	}
	if _, err := NewDovecot("inet:nohostport", time.Second); err == nil {
		t.Error("bad inet path accepted")
	}
}

func TestParseDovecotReply(t *testing.T) {
	r, err := ParseDovecotReply("FAIL\t1\tuser=a\001tb\treason=Password expired\ttemp")
	if err != nil || r.User != "a\tb" || r.Reason != "Password expired" || !r.Temp {
		t.Errorf("%+v %v", r, err)
	}
	for _, l := range []string{"", "OK", "OK\t", "CONT\t1", "CONT\t1\ta\tb", "BOGUS\t1", "OK\tx"} {
		if _, err := ParseDovecotReply(l); err == nil {
			t.Errorf("%q accepted", l)
		}
	}
	if tabUnescape(tabEscape("a\tb\n\001c\r\x00")) != "a\tb\n\001c\r\x00" {
		t.Error("escape round trip")
	}
}
