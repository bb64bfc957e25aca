package local

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"moat/internal/delivery"
	"moat/internal/queue"
)

func TestUnknownUser(t *testing.T) {
	f := newFixture(t, "", "")
	wantState(t, f.deliver("nosuchuser12345@example.com"), queue.RcptBounced, "5.1.1", `unknown user: "nosuchuser12345"`)
}

func TestMailLoop(t *testing.T) {
	// require_home_directory makes the last check visible: past the loop
	// check, nobody's missing home defers.
	f := newFixture(t, "require_home_directory = yes\n", "")
	a := f.account()
	msg := "Received: x\r\nDelivered-To: " + strings.ToUpper(a.name) + "@Example.com\r\nSubject: s\r\n\r\nDelivered-To: nobody@example.com\r\n"
	wantState(t, f.deliverContent(a.name+"@example.com", msg), queue.RcptBounced, "5.4.6", "mail forwarding loop for "+a.name+"@example.com")
	// A Delivered-To: in the body is not a header.
	wantState(t, f.deliverContent("nobody@example.com", msg), queue.RcptDeferred, "4.3.0", "cannot access home directory /nonexistent")
}

func TestAliasForward(t *testing.T) {
	f := newFixture(t, "", "list a@remote.example, B@Other.Example, a@remote.example\n")
	r := f.deliver("List@example.com")
	wantState(t, r, queue.RcptDelivered, "2.0.0", "forwarded as ")
	msgs := f.incoming()
	if len(msgs) != 1 {
		t.Fatalf("%d forwarded messages, want 1", len(msgs))
	}
	m := msgs[0]
	if !strings.HasSuffix(r.Reason, m.ID) {
		t.Errorf("reason %q does not name %s", r.Reason, m.ID)
	}
	if got := recipients(m); !slices.Equal(got, []string{"a@remote.example", "B@Other.Example"}) {
		t.Errorf("recipients %q", got)
	}
	if o := m.Envelope.Recipients[0].Orig; o != "List@example.com" {
		t.Errorf("orig %q", o)
	}
	if m.Envelope.Sender != "sender@remote.example" || m.Envelope.ClientAddr != "192.0.2.1" {
		t.Errorf("envelope %+v", m.Envelope)
	}
	if c := content(t, m); c != "Delivered-To: list@example.com\r\n"+testContent {
		t.Errorf("content %q", c)
	}
}

func TestOwnerAlias(t *testing.T) {
	f := newFixture(t, "", "list a@remote.example\nowner-list admin@remote.example\n")
	wantState(t, f.deliver("list@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
	m := f.incoming()[0]
	if m.Envelope.Sender != "owner-list@example.com" {
		t.Errorf("sender %q, want owner-list@example.com", m.Envelope.Sender)
	}
}

func TestExpandOwnerAlias(t *testing.T) {
	f := newFixture(t, "expand_owner_alias = yes\n", "list a@remote.example\nowner-list admin@remote.example\n")
	wantState(t, f.deliver("list@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
	if s := f.incoming()[0].Envelope.Sender; s != "admin@remote.example" {
		t.Errorf("sender %q", s)
	}
}

func TestNestedAliasExpandedHere(t *testing.T) {
	f := newFixture(t, "", "all staff, x@remote.example\nstaff y@remote.example, z@remote.example\n")
	wantState(t, f.deliver("all@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
	msgs := f.incoming()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	got := recipients(msgs[0])
	slices.Sort(got)
	if !slices.Equal(got, []string{"x@remote.example", "y@remote.example", "z@remote.example"}) {
		t.Errorf("recipients %q", got)
	}
}

func TestAliasLoopBounces(t *testing.T) {
	f := newFixture(t, "", "a b\nb a\n")
	wantState(t, f.deliver("a@example.com"), queue.RcptBounced, "5.4.6", "loop")
}

func TestAliasToLocalUserIsResubmitted(t *testing.T) {
	f := newFixture(t, "", "")
	a := f.account()
	f2 := newFixture(t, "", "postmaster "+a.name+"\n")
	_ = f
	wantState(t, f2.deliver("postmaster@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
	if got := recipients(f2.incoming()[0]); !slices.Equal(got, []string{a.name + "@example.com"}) {
		t.Errorf("recipients %q", got)
	}
}

func TestExtensionPropagation(t *testing.T) {
	f := newFixture(t, "propagate_unmatched_extensions = canonical, virtual, alias\n", "list a@remote.example\n")
	wantState(t, f.deliver("list+tag@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
	if got := recipients(f.incoming()[0]); !slices.Equal(got, []string{"a+tag@remote.example"}) {
		t.Errorf("recipients %q", got)
	}
	// The full local part wins over the bare user.
	g := newFixture(t, "", "list a@remote.example\nlist+x b@remote.example\n")
	wantState(t, g.deliver("list+x@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
	if got := recipients(g.incoming()[0]); !slices.Equal(got, []string{"b@remote.example"}) {
		t.Errorf("recipients %q", got)
	}
}

func TestRestrictedTargets(t *testing.T) {
	f := newFixture(t, "allow_mail_to_commands = forward\nallow_mail_to_files = forward\n",
		"cmd |/bin/true\nfile BASE/x.mbox\ninc :include:BASE/list\n")
	wantState(t, f.deliver("cmd@example.com"), queue.RcptBounced, "5.7.1", "mail to command is restricted")
	wantState(t, f.deliver("file@example.com"), queue.RcptBounced, "5.7.1", "mail to file is restricted")
	// The defaults forbid commands and files in :include: files.
	g := newFixture(t, "", "inc :include:BASE/list\n")
	writeFile(t, filepath.Join(g.base, "list"), "# the list\n|/bin/true\n", 0o644, 0, 0)
	wantState(t, g.deliver("inc@example.com"), queue.RcptBounced, "5.7.1", "mail to command is restricted")
	writeFile(t, filepath.Join(g.base, "list"), "/tmp/x\n", 0o644, 0, 0)
	wantState(t, g.deliver("inc@example.com"), queue.RcptBounced, "5.7.1", "mail to file is restricted")
}

func TestInclude(t *testing.T) {
	f := newFixture(t, "", "inc :include:BASE/list\nbad :include:BASE/ww\nrel :include:list\n")
	writeFile(t, filepath.Join(f.base, "list"), "# members\na@remote.example,\n  b@remote.example\n", 0o644, 0, 0)
	wantState(t, f.deliver("inc@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
	got := recipients(f.incoming()[0])
	if !slices.Equal(got, []string{"a@remote.example", "b@remote.example"}) {
		t.Errorf("recipients %q", got)
	}
	writeFile(t, filepath.Join(f.base, "ww"), "a@remote.example\n", 0o666, 0, 0)
	wantState(t, f.deliver("bad@example.com"), queue.RcptBounced, "5.3.5", "mail system configuration error")
	wantState(t, f.deliver("rel@example.com"), queue.RcptBounced, "5.3.5", "mail system configuration error")
	if log := f.logText(); !strings.Contains(log, "is world writable") || !strings.Contains(log, ":include:list uses a relative path") {
		t.Errorf("log:\n%s", log)
	}
}

func TestMailboxTransport(t *testing.T) {
	f := newFixture(t, "mailbox_transport = lmtp:unix:private/dovecot-lmtp\n", "")
	r := f.deliver("anyone+x@example.com")
	if r.Pass != "lmtp:unix:private/dovecot-lmtp" || r.Address != "" {
		t.Fatalf("result %+v", r)
	}
	// The alias is expanded first; the passed address is the one the
	// alias named.
	g := newFixture(t, "mailbox_transport = dovecot\n", "me me, b@remote.example\n")
	r = g.deliver("me@example.com")
	if r.Pass != "dovecot:example.com" {
		t.Fatalf("result %+v", r)
	}
}

func TestFallbackAndLuserRelay(t *testing.T) {
	f := newFixture(t, "fallback_transport = relay:[mx.remote.example]\n", "")
	if r := f.deliver("ghost@example.com"); r.Pass != "relay:[mx.remote.example]" {
		t.Fatalf("result %+v", r)
	}
	g := newFixture(t, "luser_relay = catchall+$user@remote.example\n", "")
	wantState(t, g.deliver("Ghost+ext@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
	if got := recipients(g.incoming()[0]); !slices.Equal(got, []string{"catchall+ghost@remote.example"}) {
		t.Errorf("recipients %q", got)
	}
}

func TestDotForward(t *testing.T) {
	f := newFixture(t, "home_mailbox = Maildir/\n", "")
	a := f.account()
	writeFile(t, filepath.Join(a.home, ".forward"), "fwd@remote.example, \\"+a.name+"\n", 0o644, a.uid, a.gid)
	r := f.deliver(a.name + "@example.com")
	wantState(t, r, queue.RcptDelivered, "2.0.0", "delivered to maildir")
	if !strings.Contains(r.Reason, "forwarded as ") || r.Replayable {
		t.Errorf("result %+v", r)
	}
	msgs := f.incoming()
	if len(msgs) != 1 || !slices.Equal(recipients(msgs[0]), []string{"fwd@remote.example"}) {
		t.Fatalf("forwarded %d", len(msgs))
	}
	if c := content(t, msgs[0]); !strings.HasPrefix(c, "Delivered-To: "+a.name+"@example.com\r\n") {
		t.Errorf("content %q", c)
	}
	got := maildirFiles(t, filepath.Join(a.home, "Maildir"))
	if len(got) != 1 || !strings.Contains(got[0], "Delivered-To: "+a.name+"@example.com") {
		t.Errorf("maildir %q", got)
	}
}

func TestDotForwardExtensionAndUnsafe(t *testing.T) {
	f := newFixture(t, "home_mailbox = Maildir/\n", "")
	a := f.account()
	writeFile(t, filepath.Join(a.home, ".forward+lists"), "lists@remote.example\n", 0o644, a.uid, a.gid)
	writeFile(t, filepath.Join(a.home, ".forward"), "plain@remote.example\n", 0o664, a.uid, a.gid)
	wantState(t, f.deliver(a.name+"+lists@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
	if got := recipients(f.incoming()[0]); !slices.Equal(got, []string{"lists@remote.example"}) {
		t.Errorf("recipients %q", got)
	}
	// The group-writable .forward is ignored: mailbox delivery.
	r := f.deliver(a.name + "+other@example.com")
	wantState(t, r, queue.RcptDelivered, "2.0.0", "delivered to maildir")
	if !r.Replayable {
		t.Errorf("a lone Maildir delivery should be replayable")
	}
	if log := f.logText(); !strings.Contains(log, "is group or world writable") {
		t.Errorf("log:\n%s", log)
	}
	// A symbolic link is not followed.
	os.Remove(filepath.Join(a.home, ".forward"))
	if err := os.Symlink(filepath.Join(a.home, ".forward+lists"), filepath.Join(a.home, ".forward")); err != nil {
		t.Fatal(err)
	}
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to maildir")
	// An empty .forward means "do not forward".
	os.Remove(filepath.Join(a.home, ".forward"))
	writeFile(t, filepath.Join(a.home, ".forward"), "# nothing\n", 0o644, a.uid, a.gid)
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to maildir")
	if n := len(maildirFiles(t, filepath.Join(a.home, "Maildir"))); n != 1 {
		// The same queue ID and recipient index: one keyed file.
		t.Errorf("%d Maildir files, want 1 (keyed deliveries)", n)
	}
}

func TestSpoolMbox(t *testing.T) {
	f := newFixture(t, "", "")
	a := f.account()
	r := f.deliver(a.name + "@example.com")
	wantState(t, r, queue.RcptDelivered, "2.0.0", "delivered to mailbox")
	mb := filepath.Join(f.spool, a.name)
	got := readFile(t, mb)
	if !strings.HasPrefix(got, "From sender@remote.example ") || !strings.Contains(got, "\n>From the start of a line\n") ||
		!strings.Contains(got, "Return-Path: <sender@remote.example>\n") || !strings.HasSuffix(got, "hello\n\n") {
		t.Errorf("mbox:\n%s", got)
	}
	fi, err := os.Stat(mb)
	if err != nil {
		t.Fatal(err)
	}
	if uid, _ := statUID(fi); int(uid) != a.uid {
		t.Errorf("mailbox owned by %d, want %d", uid, a.uid)
	}
}

func TestMailboxSizeLimit(t *testing.T) {
	f := newFixture(t, "mailbox_size_limit = 300\nmessage_size_limit = 100\n", "")
	a := f.account()
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to mailbox")
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptBounced, "5.2.2", "")
}

func TestUnwritableMaildirThenFixed(t *testing.T) {
	f := newFixture(t, "home_mailbox = Maildir/\n", "")
	a := f.account()
	md := filepath.Join(a.home, "Maildir")
	if err := os.Mkdir(md, 0o700); err != nil { // root's: the user cannot write it
		t.Fatal(err)
	}
	r := f.deliver(a.name + "@example.com")
	if r.State != queue.RcptDeferred || !strings.HasPrefix(r.DSN, "4.") {
		t.Fatalf("result %+v, want deferred 4.x", r)
	}
	if err := os.Chown(md, a.uid, a.gid); err != nil {
		t.Fatal(err)
	}
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to maildir")
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to maildir")
	if n := len(maildirFiles(t, md)); n != 1 {
		t.Errorf("%d messages, want exactly 1", n)
	}
}

func TestCommands(t *testing.T) {
	f := newFixture(t, "", "ok |exit 0\ntemp |exit 75\nnouser |exit 67\nother \"|echo oops; exit 3\"\ndsn |echo 5.2.2 mailbox full; exit 1\n")
	wantState(t, f.deliver("ok@example.com"), queue.RcptDelivered, "2.0.0", "delivered to command: exit 0")
	wantState(t, f.deliver("temp@example.com"), queue.RcptDeferred, "4.3.0", "temporary failure")
	wantState(t, f.deliver("nouser@example.com"), queue.RcptBounced, "5.1.1", "user unknown")
	wantState(t, f.deliver("other@example.com"), queue.RcptBounced, "5.3.0", `Command died with status 3: "echo oops; exit 3". Command output: oops`)
	wantState(t, f.deliver("dsn@example.com"), queue.RcptBounced, "5.2.2", "mailbox full")
}

func TestMailboxCommand(t *testing.T) {
	f := newFixture(t, `mailbox_command = cat > "$HOME/msg"; env > "$HOME/env"; pwd > "$HOME/pwd"`+"\n", "")
	a := f.account()
	r := f.deliver(a.name + "+ext@example.com")
	wantState(t, r, queue.RcptDelivered, "2.0.0", "delivered to command: cat")
	msg := readFile(t, filepath.Join(a.home, "msg"))
	if !strings.HasPrefix(msg, "From sender@remote.example  ") || strings.Contains(msg, "\r") ||
		!strings.Contains(msg, "\nReturn-Path: <sender@remote.example>\nX-Original-To: "+a.name+"+ext@example.com\nDelivered-To: "+a.name+"+ext@example.com\nFrom: ") ||
		!strings.Contains(msg, "\nFrom the start") || !strings.HasSuffix(msg, "hello\n") {
		t.Errorf("command input:\n%s", msg)
	}
	env := readFile(t, filepath.Join(a.home, "env"))
	for _, want := range []string{"USER=" + a.name, "LOGNAME=" + a.name, "HOME=" + a.home, "EXTENSION=ext",
		"DOMAIN=example.com", "LOCAL=" + a.name + "+ext", "RECIPIENT=" + a.name + "+ext@example.com",
		"SENDER=sender@remote.example", "CLIENT_ADDRESS=192.0.2.1", "SHELL=/bin/sh", "PATH=/usr/bin:/bin"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
	if pwd := readFile(t, filepath.Join(a.home, "pwd")); pwd != a.home+"\n" {
		t.Errorf("working directory %q", pwd)
	}
	fi, err := os.Stat(filepath.Join(a.home, "msg"))
	if err != nil {
		t.Fatal(err)
	}
	if uid, _ := statUID(fi); int(uid) != a.uid {
		t.Errorf("command ran as uid %d, want %d", uid, a.uid)
	}
}

func TestAliasFileAndCommandRunAsDefaultPrivs(t *testing.T) {
	f := newFixture(t, "", "archive BASE/pub/archive, |id -u > BASE/pub/uid\n")
	pub := filepath.Join(f.base, "pub")
	if err := os.Mkdir(pub, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pub, 0o777); err != nil {
		t.Fatal(err)
	}
	r := f.deliver("archive@example.com")
	wantState(t, r, queue.RcptDelivered, "2.0.0", "delivered to file: "+filepath.Join(pub, "archive"))
	if got := readFile(t, filepath.Join(pub, "uid")); got != "65534\n" {
		t.Errorf("command ran as uid %q, want nobody's", got)
	}
	mb := readFile(t, filepath.Join(pub, "archive"))
	if !strings.HasPrefix(mb, "From sender@remote.example ") || !strings.Contains(mb, "Delivered-To: archive@example.com\n") {
		t.Errorf("file:\n%s", mb)
	}
}

func TestDotForwardSymlinks(t *testing.T) {
	f := newFixture(t, "home_mailbox = Maildir/\nforward_path = $home/sub/.forward, BASE/alt/$user/.forward\n", "")
	a := f.account()
	// A directory the user links to root's file: the file is read with
	// the user's rights, so root's file stays root's.
	secret := filepath.Join(f.base, "secret")
	if err := os.Mkdir(secret, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(secret, ".forward"), "leak@remote.example\n", 0o600, 0, 0)
	if err := os.Symlink(secret, filepath.Join(a.home, "sub")); err != nil {
		t.Fatal(err)
	}
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to maildir")
	if log := f.logText(); !strings.Contains(log, "/sub/.forward: Permission denied") {
		t.Errorf("log:\n%s", log)
	}
	// A link root made (BASE/alt -> BASE/home) is the admin's: followed.
	os.Remove(filepath.Join(a.home, "sub"))
	if err := os.Symlink(filepath.Join(f.base, "home"), filepath.Join(f.base, "alt")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(a.home, ".forward"), "fwd@remote.example\n", 0o644, a.uid, a.gid)
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "forwarded as ")
}

func TestStrictMailboxOwnership(t *testing.T) {
	f := newFixture(t, "", "")
	a := f.account()
	writeFile(t, filepath.Join(f.spool, a.name), "", 0o666, 0, 0)
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDeferred, "4.2.0", "wrong ownership")
}

func TestSeveralRecipients(t *testing.T) {
	f := newFixture(t, "home_mailbox = Maildir/\n", "list x@remote.example\n")
	a := f.account()
	req := f.request("", testContent, a.name+"@example.com", "ghost@example.com", "list@example.com")
	for i := range req.Recipients {
		req.Recipients[i].Index = i + 5
	}
	res := f.agent.Deliver(context.Background(), req)
	if len(res) != 3 {
		t.Fatalf("%d results", len(res))
	}
	byIndex := map[int]delivery.Result{}
	for _, r := range res {
		byIndex[r.Index] = r
	}
	wantState(t, byIndex[5], queue.RcptDelivered, "2.0.0", "delivered to maildir")
	wantState(t, byIndex[6], queue.RcptBounced, "5.1.1", "unknown user")
	wantState(t, byIndex[7], queue.RcptDelivered, "2.0.0", "forwarded as ")
	// The null sender: Return-Path: <>, and forwarded copies keep it.
	if got := maildirFiles(t, filepath.Join(a.home, "Maildir")); len(got) != 1 || !strings.HasPrefix(got[0], "Return-Path: <>\n") {
		t.Errorf("maildir %q", got)
	}
	if s := f.incoming()[0].Envelope.Sender; s != "" {
		t.Errorf("forwarded sender %q", s)
	}
	// A context that has ended defers everyone.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, r := range f.agent.Deliver(ctx, req) {
		if r.State != queue.RcptDeferred {
			t.Errorf("after cancel: %+v", r)
		}
	}
}

func TestPerUserMaps(t *testing.T) {
	f := newFixture(t, "", "")
	a := f.account()
	b := f.account()
	writeFile(t, filepath.Join(f.base, "transports"), a.name+" lmtp:unix:private/dovecot-lmtp\n", 0o644, 0, 0)
	writeFile(t, filepath.Join(f.base, "commands"), b.name+" cat > $HOME/got\n", 0o644, 0, 0)
	g := f.reopen("mailbox_transport_maps = texthash:BASE/transports\nmailbox_command_maps = texthash:BASE/commands\n")
	if r := g.deliver(a.name + "@example.com"); r.Pass != "lmtp:unix:private/dovecot-lmtp" {
		t.Errorf("result %+v", r)
	}
	wantState(t, g.deliver(b.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to command: cat > $HOME/got")
	if got := readFile(t, filepath.Join(b.home, "got")); !strings.Contains(got, "Subject: test\n") {
		t.Errorf("command input %q", got)
	}
}

func TestBadParameters(t *testing.T) {
	for _, tc := range []struct{ cf, want string }{
		{"allow_mail_to_commands = alias, bogus\n", "allow_mail_to_commands"},
		{"mailbox_delivery_lock = fcntl, nope\n", "mailbox_delivery_lock"},
		{"default_privs = root\n", "default_privs"},
		{"default_privs = nosuchaccount12345\n", "default_privs"},
		{"mailbox_size_limit = 1000\nmessage_size_limit = 2000\n", "mailbox_size_limit"},
		{"forward_path = ${home\n", "forward_path"},
		{"home_mailbox = /abs/Maildir/\n", "home_mailbox"},
		{"prepend_delivered_header = command, nope\n", "prepend_delivered_header"},
		{"command_time_limit = 0\n", "command_time_limit"},
	} {
		_, err := newAgentErr(t, tc.cf)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %s", tc.cf, err, tc.want)
		}
	}
}

func TestRegexpAliasSubstitutionRefused(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.regexp")
	good := filepath.Join(dir, "good.regexp")
	writeFile(t, bad, "# $1 in a comment is fine\n/^(.*)-cmd$/ |/usr/bin/handle $1\n", 0o644, 0, 0)
	writeFile(t, good, "/^list-.*$/ |/usr/bin/handle\n", 0o644, 0, 0)
	if _, err := newAgentErr(t, "alias_maps = regexp:"+bad+"\n"); err == nil || !strings.Contains(err.Error(), "substitution is not allowed") {
		t.Errorf("error %v", err)
	}
	if _, err := newAgentErr(t, "alias_maps = pcre:{{/^(.*)$$/ $${1}@x}}\n"); err == nil || !strings.Contains(err.Error(), "substitution is not allowed") {
		t.Errorf("inline: error %v", err)
	}
	if _, err := newAgentErr(t, "alias_maps = regexp:"+good+"\n"); err != nil {
		t.Errorf("good table refused: %v", err)
	}
}

func TestConcurrentDeliveries(t *testing.T) {
	f := newFixture(t, "home_mailbox = Maildir/\n", "list x@remote.example, y@remote.example\n")
	a := f.account()
	var wg sync.WaitGroup
	results := make(chan delivery.Result, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rcpt := a.name + "@example.com"
			if i%2 == 1 {
				rcpt = "list@example.com"
			}
			req := f.request("s@remote.example", testContent, rcpt)
			req.QueueID = "4dXq8K0Bblz6Vd" + string(rune('A'+i))
			for _, r := range f.agent.Deliver(context.Background(), req) {
				results <- r
			}
		}()
	}
	wg.Wait()
	close(results)
	for r := range results {
		if r.State != queue.RcptDelivered {
			t.Errorf("result %+v", r)
		}
	}
	if n := len(maildirFiles(t, filepath.Join(a.home, "Maildir"))); n != 4 {
		t.Errorf("%d Maildir files, want 4", n)
	}
	if n := len(f.incoming()); n != 4 {
		t.Errorf("%d forwarded messages, want 4", n)
	}
}

// TestDotForwardSamePathOnce: without a recipient_delimiter the stock
// forward_path names $home/.forward twice; the file is read (and its
// fault reported) once.
func TestDotForwardSamePathOnce(t *testing.T) {
	f := newFixture(t, "home_mailbox = Maildir/\nrecipient_delimiter =\n", "")
	a := f.account()
	writeFile(t, filepath.Join(a.home, ".forward"), "plain@remote.example\n", 0o664, a.uid, a.gid)
	wantState(t, f.deliver(a.name+"@example.com"), queue.RcptDelivered, "2.0.0", "delivered to maildir")
	if n := strings.Count(f.logText(), "is group or world writable"); n != 1 {
		t.Errorf("the unsafe .forward reported %d times, want once:\n%s", n, f.logText())
	}
}
