package sasl

import (
	"context"
	"testing"
)

// clientAgainst runs the client half against the server half for one
// mechanism and reports the server's verdict.
func clientAgainst(t *testing.T, b *Builtin, mech, user, pass string) error {
	t.Helper()
	ctx := context.Background()
	c, err := NewClient(mech, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := b.Start(ctx, c.Mech(), ConnInfo{Service: "smtp"})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	resp := c.Initial()
	for i := 0; i < 5; i++ {
		ch, done, err := ex.Step(ctx, resp)
		if err != nil || done {
			return err
		}
		if resp, err = c.Next(ch); err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
	}
	t.Fatal("exchange did not end")
	return nil
}

func TestClientAgainstBuiltin(t *testing.T) {
	b := builtinFor(t, map[string]string{"alice": "s3cret:with colon"}, "")
	for _, mech := range []string{Plain, Login, CRAMMD5} {
		if err := clientAgainst(t, b, mech, "alice", "s3cret:with colon"); err != nil {
			t.Errorf("%s right password: %v", mech, err)
		}
		if err := clientAgainst(t, b, mech, "alice", "wrong"); AsFailure(err) == nil {
			t.Errorf("%s wrong password: %v, want a failure", mech, err)
		}
	}
}

func TestChooseClientMech(t *testing.T) {
	opt := func(s string) SecurityOptions {
		o, err := ParseSecurityOptions(s)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	for _, c := range []struct {
		offered []string
		opts    string
		want    string
	}{
		{[]string{"PLAIN", "LOGIN", "CRAM-MD5"}, "noanonymous", CRAMMD5},
		{[]string{"plain", "login"}, "noanonymous", Plain},
		{[]string{"LOGIN"}, "", Login},
		{[]string{"PLAIN", "LOGIN"}, "noplaintext, noanonymous", ""},
		{[]string{"CRAM-MD5", "PLAIN"}, "nodictionary", Plain},
		{[]string{"SCRAM-SHA-256", "ANONYMOUS"}, "", ""},
		{nil, "", ""},
	} {
		if got := ChooseClientMech(c.offered, opt(c.opts)); got != c.want {
			t.Errorf("ChooseClientMech(%v, %q) = %q, want %q", c.offered, c.opts, got, c.want)
		}
	}
}

func TestParseClientPassword(t *testing.T) {
	for in, want := range map[string][2]string{
		"u:p":          {"u", "p"},
		"u:p:q":        {"u", "p:q"},
		"u":            {"u", ""},
		"u@d.example:": {"u@d.example", ""},
	} {
		if u, p := ParseClientPassword(in); u != want[0] || p != want[1] {
			t.Errorf("ParseClientPassword(%q) = %q, %q", in, u, p)
		}
	}
	if _, err := NewClient(Plain, "a\x00b", "p"); err == nil {
		t.Error("NUL in user accepted")
	}
	if _, err := NewClient("GSSAPI", "a", "p"); err == nil {
		t.Error("unknown mechanism accepted")
	}
}
