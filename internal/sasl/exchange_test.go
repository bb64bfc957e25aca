package sasl

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/maps"
)

// run drives an exchange with the client's responses in order; the first
// may be nil (no initial response). It returns each challenge seen and the
// final error.
func run(t *testing.T, ex Exchange, resps ...func(ch []byte) []byte) ([][]byte, error) {
	t.Helper()
	ctx := context.Background()
	var seen [][]byte
	var ch []byte
	for i := 0; i < 10; i++ {
		var r []byte
		if i < len(resps) {
			r = resps[i](ch)
		} else {
			r = []byte{}
		}
		next, done, err := ex.Step(ctx, r)
		if err != nil {
			return seen, err
		}
		if done {
			return seen, nil
		}
		seen = append(seen, next)
		ch = next
	}
	t.Fatal("exchange did not end")
	return nil, nil
}

func lit(s string) func([]byte) []byte { return func([]byte) []byte { return []byte(s) } }
func none([]byte) []byte               { return nil }

func builtinFor(t *testing.T, users map[string]string, localDomain string) *Builtin {
	t.Helper()
	var b strings.Builder
	for u, pw := range users {
		v, err := NewCredentials([]byte(pw), HashOptions{Memory: 64, Time: 1, SCRAM: !strings.HasPrefix(u, "noscram"), CRAM: !strings.HasPrefix(u, "nocram")})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s\n", u, v)
	}
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	tab, err := maps.Open("texthash:"+p, maps.Options{Fold: true})
	if err != nil {
		t.Fatal(err)
	}
	bk, err := NewBuiltin(tab, localDomain, "mx.example.org")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bk.Close() })
	return bk
}

func start(t *testing.T, b Backend, mech string) Exchange {
	t.Helper()
	ex, err := b.Start(context.Background(), mech, ConnInfo{Service: "smtp"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ex.Close)
	return ex
}

func cramResponse(user, pw string) func([]byte) []byte {
	return func(ch []byte) []byte {
		h := hmac.New(md5.New, []byte(pw))
		h.Write(ch)
		return []byte(user + " " + hex.EncodeToString(h.Sum(nil)))
	}
}

// testMechanisms runs every mechanism b offers against a user with
// password "pw1", right and wrong.
func testMechanisms(t *testing.T, b Backend, user string) {
	ok := func(name string, _ [][]byte, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := func(name string, _ [][]byte, err error) {
		t.Helper()
		if f := AsFailure(err); f == nil || f.Temporary {
			t.Errorf("%s: got %v, want a permanent failure", name, err)
		}
	}
	{
		seen, err := run(t, start(t, b, Plain), lit("\x00"+user+"\x00pw1"))
		ok("PLAIN initial", seen, err)
	}
	{
		ex := start(t, b, Plain)
		seen, err := run(t, ex, none, lit("\x00"+user+"\x00pw2"))
		bad("PLAIN wrong", seen, err)
		if _, builtin := b.(*Builtin); builtin && ex.User() != user {
			t.Errorf("user %q after failure", ex.User())
		}
	}
	{
		seen, err := run(t, start(t, b, Login), none, lit(user), lit("pw1"))
		ok("LOGIN", seen, err)
		if len(seen) != 2 || string(seen[0]) != "Username:" || string(seen[1]) != "Password:" {
			t.Errorf("LOGIN challenges %q", seen)
		}
	}
	{
		seen, err := run(t, start(t, b, Login), lit(user), lit("nope"))
		bad("LOGIN wrong", seen, err)
	}
	{
		seen, err := run(t, start(t, b, CRAMMD5), none, cramResponse(user, "pw1"))
		ok("CRAM-MD5", seen, err)
	}
	{
		seen, err := run(t, start(t, b, CRAMMD5), none, cramResponse(user, "pw2"))
		bad("CRAM-MD5 wrong", seen, err)
	}
}

func TestBuiltinMechanisms(t *testing.T) {
	b := builtinFor(t, map[string]string{"alice@example.org": "pw1", "nocram@example.org": "pw1"}, "example.org")
	testMechanisms(t, b, "alice@example.org")
	// smtpd_sasl_local_domain completes a bare name.
	if _, err := run(t, start(t, b, Plain), lit("\x00alice\x00pw1")); err != nil {
		t.Errorf("bare name: %v", err)
	}
	// No stored CRAM-MD5 secret: the mechanism fails like a wrong password.
	if _, err := run(t, start(t, b, CRAMMD5), none, cramResponse("nocram@example.org", "pw1")); AsFailure(err) == nil {
		t.Errorf("CRAM-MD5 without a secret: %v", err)
	}
	// Proxy authorization is refused.
	if _, err := run(t, start(t, b, Plain), lit("bob\x00alice@example.org\x00pw1")); AsFailure(err) == nil {
		t.Errorf("authzid: %v", err)
	}
	for _, m := range []string{"\x00alice", "alice\x00\x00pw1", "\x00\x00pw1", "a\x00b\x00c\x00d"} {
		if _, err := run(t, start(t, b, Plain), lit(m)); AsFailure(err) == nil {
			t.Errorf("PLAIN %q: %v", m, err)
		}
	}
	if _, err := b.Start(context.Background(), "DIGEST-MD5", ConnInfo{}); err != ErrNoMech {
		t.Errorf("DIGEST-MD5: %v", err)
	}
}

// scramClient is RFC 5802 §3's client side, written from the RFC for this
// test: it checks the server's signature too.
type scramClient struct {
	user, pw, cnonce    string
	clientFirstBare     string
	authMsg, serverSign []byte
	t                   *testing.T
}

func (c *scramClient) first([]byte) []byte {
	c.clientFirstBare = "n=" + strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.user) + ",r=" + c.cnonce
	return []byte("n,," + c.clientFirstBare)
}

func (c *scramClient) final(serverFirst []byte) []byte {
	var nonce, salt string
	var iter int
	for _, a := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(a, "r="):
			nonce = a[2:]
		case strings.HasPrefix(a, "s="):
			salt = a[2:]
		case strings.HasPrefix(a, "i="):
			fmt.Sscan(a[2:], &iter)
		}
	}
	s, _ := base64.StdEncoding.DecodeString(salt)
	ck, sk, srv := scramKeys([]byte(c.pw), s, iter)
	without := "c=" + base64.StdEncoding.EncodeToString([]byte("n,,")) + ",r=" + nonce
	c.authMsg = []byte(c.clientFirstBare + "," + string(serverFirst) + "," + without)
	sig := hmacSHA256(sk[:], c.authMsg)
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = ck[i] ^ sig[i]
	}
	c.serverSign = hmacSHA256(srv[:], c.authMsg)
	return []byte(without + ",p=" + base64.StdEncoding.EncodeToString(proof))
}

func (c *scramClient) check(serverFinal []byte) []byte {
	if string(serverFinal) != "v="+base64.StdEncoding.EncodeToString(c.serverSign) {
		c.t.Errorf("server signature %q does not verify", serverFinal)
	}
	return []byte{}
}

func TestBuiltinSCRAM(t *testing.T) {
	b := builtinFor(t, map[string]string{"al,ice=x@example.org": "pw1", "noscram@example.org": "pw1"}, "")
	c := &scramClient{user: "al,ice=x@example.org", pw: "pw1", cnonce: "fyko+d2lbbFgONRv9qkxdawL", t: t}
	if _, err := run(t, start(t, b, SCRAMSHA256), c.first, c.final, c.check); err != nil {
		t.Errorf("SCRAM: %v", err)
	}
	for _, u := range []struct{ user, pw string }{{"al,ice=x@example.org", "pw2"}, {"noscram@example.org", "pw1"}, {"nobody@example.org", "pw1"}} {
		c := &scramClient{user: u.user, pw: u.pw, cnonce: "abc", t: t}
		if _, err := run(t, start(t, b, SCRAMSHA256), c.first, c.final, c.check); AsFailure(err) == nil {
			t.Errorf("SCRAM %s/%s: %v", u.user, u.pw, err)
		}
	}
	// Channel binding is refused, not ignored.
	if _, err := run(t, start(t, b, SCRAMSHA256), lit("p=tls-unique,,n=a,r=b")); AsFailure(err) == nil {
		t.Errorf("p=: %v", err)
	}
}

func TestSCRAMSHA256RFC7677(t *testing.T) {
	// RFC 7677 §3's example, checked from the server side with the
	// secret derived from the password.
	_, stored, server := scramKeys([]byte("pencil"), mustB64(t, "W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
	sec := &scramSecret{iter: 4096, salt: mustB64(t, "W22ZaJ0SNY7soEsUEjb6gQ=="), storedKey: stored, serverKey: server}
	authMsg := "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	if got := base64.StdEncoding.EncodeToString(hmacSHA256(sec.serverKey[:], []byte(authMsg))); got != "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=" {
		t.Errorf("server signature %s", got)
	}
	_ = sha256.Size
}

func mustB64(t *testing.T, s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
