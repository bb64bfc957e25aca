package local

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"moat/internal/delivery"
	"moat/internal/queue"
)

// verify asks the agent about one recipient as sendmail -bv does.
func (f *fixture) verify(rcpt string) delivery.Result {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := f.agent.Verify(ctx, f.request("sender@remote.example", "Subject: probe\r\n", rcpt))
	if len(res) != 1 || res[0].Index != 0 {
		f.t.Fatalf("results %+v for one recipient", res)
	}
	return res[0]
}

// TestVerify: local(8)'s verdicts under sendmail -bv, with its trace-only
// wording, and nothing written: no mailbox, no forwarded copy.
func TestVerify(t *testing.T) {
	f := newFixture(t, "", "list a@remote.example, b@other.example\n")
	a := f.account()
	wantState(t, f.verify(a.name+"+ext@example.com"), queue.RcptDelivered, "2.0.0", "delivers to mailbox")
	wantState(t, f.verify("nosuchuser12345@example.com"), queue.RcptBounced, "5.1.1", `unknown user: "nosuchuser12345"`)
	wantState(t, f.verify("list@example.com"), queue.RcptDelivered, "2.0.0", "aliased to a@remote.example, b@other.example")
	wantState(t, f.verify("list+x@example.com"), queue.RcptDelivered, "2.0.0", "aliased to a@remote.example")
	if r := f.verify("list@example.com"); r.Relay != "local" {
		t.Errorf("relay %q", r.Relay)
	}
	if ents, _ := os.ReadDir(f.spool); len(ents) != 0 {
		t.Errorf("the spool holds %d entries after verification", len(ents))
	}
	if n := len(f.incoming()); n != 0 {
		t.Errorf("%d messages forwarded by verification", n)
	}

	g := newFixture(t, "home_mailbox = Maildir/\n", "")
	b := g.account()
	wantState(t, g.verify(b.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivers to maildir")
	if _, err := os.Stat(filepath.Join(b.home, "Maildir")); err == nil {
		t.Error("verification created a Maildir")
	}
	writeFile(t, filepath.Join(b.home, ".forward"), "fwd@remote.example, \\"+b.name+"\n", 0o644, b.uid, b.gid)
	wantState(t, g.verify(b.name+"@example.com"), queue.RcptDelivered, "2.0.0", "forwards to fwd@remote.example, "+b.name)
	wantState(t, g.verify("\\"+b.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivers to maildir")
	if n := len(g.incoming()); n != 0 {
		t.Errorf("%d messages forwarded by verification", n)
	}
	h := newFixture(t, "mailbox_command = /usr/bin/procmail -a $EXTENSION\n", "")
	c := h.account()
	wantState(t, h.verify(c.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivers to command: /usr/bin/procmail -a $EXTENSION")
	wantState(t, h.verify("root@example.com"), queue.RcptDeferred, "4.3.0", "uid 0")
}

// TestVerifyPassesOn: mailbox_transport and fallback_transport pass the
// recipient on, as delivery does, so the queue manager asks that
// transport; luser_relay forwards.
func TestVerifyPassesOn(t *testing.T) {
	f := newFixture(t, "mailbox_transport = dovecot\n", "")
	if r := f.verify("anyone@example.com"); r.Pass != "dovecot:example.com" {
		t.Fatalf("result %+v", r)
	}
	g := newFixture(t, "fallback_transport = relay:[mx.remote.example]\n", "")
	if r := g.verify("ghost@example.com"); r.Pass != "relay:[mx.remote.example]" {
		t.Fatalf("result %+v", r)
	}
	h := newFixture(t, "luser_relay = catchall+$user@remote.example\n", "")
	wantState(t, h.verify("Ghost+ext@example.com"), queue.RcptDelivered, "2.0.0", "forwards to catchall+ghost@remote.example")
	if n := len(h.incoming()); n != 0 {
		t.Errorf("%d messages forwarded by verification", n)
	}
}
