package policy

import (
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startPostgrey runs Debian's postgrey(8) on a free loopback port with its
// own database directory and greylisting delay, and returns its endpoint.
func startPostgrey(t *testing.T, delay int) string {
	t.Helper()
	bin, err := exec.LookPath("postgrey")
	if err != nil {
		bin = "/usr/sbin/postgrey"
		if _, err := os.Stat(bin); err != nil {
			t.Skip("postgrey is not installed (Debian package postgrey)")
		}
	}
	if os.Getuid() != 0 {
		t.Skip("postgrey drops to its own account: run as root")
	}
	pu, err := user.Lookup("postgrey")
	if err != nil {
		t.Skip("no postgrey account")
	}
	uid, _ := strconv.Atoi(pu.Uid)
	// Not t.TempDir: its parent is 0700, which postgrey's account cannot
	// traverse once it dropped privileges.
	db, err := os.MkdirTemp("", "postgrey-db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(db) })
	if err := os.Chown(db, uid, -1); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "--inet="+addr, "--dbdir="+db, "--delay="+strconv.Itoa(delay),
		"--user=postgrey", "--group="+groupName(pu), "--auto-whitelist-clients=0")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("postgrey output:\n%s", out.String())
		}
	})
	for range 100 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return "inet:" + addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("postgrey did not listen on %s:\n%s", addr, out.String())
	return ""
}

// greylisted reports postgrey's default greylist action:
// "DEFER_IF_PERMIT 4.2.0 Greylisted, see http://...".
func greylisted(action string) bool {
	return strings.HasPrefix(action, "DEFER_IF_PERMIT ") && strings.Contains(action, "Greylisted")
}

func groupName(u *user.User) string {
	if g, err := user.LookupGroupId(u.Gid); err == nil {
		return g.Name
	}
	return u.Gid
}

// Greylisting against the real postgrey: the first attempt of a triplet is
// deferred, a retry after the delay passes with postgrey's X-Greylist
// header, over one reused connection.
func TestPostgrey(t *testing.T) {
	const delay = 2
	ep := startPostgrey(t, delay)
	p := NewPool()
	defer p.Close()
	s := fast(ep)
	s.Timeout = 10 * time.Second
	c := p.Client(s)
	r := &Request{
		ProtocolState: "RCPT", ProtocolName: "ESMTP", HeloName: "client.example",
		Sender: "sender@client.example", Recipient: "user@moat.example", ClientAddress: "192.0.2.25",
		ClientName: "unknown", ReverseClientName: "unknown", ClientPort: "40000", Instance: "1.1.1",
		ServerAddress: "127.0.0.1", ServerPort: "25",
	}
	got, err := c.Query(t.Context(), r)
	if err != nil || !greylisted(got) {
		t.Fatalf("first attempt = %q, %v; want DEFER_IF_PERMIT Greylisted ...", got, err)
	}
	// A retry inside the delay is still greylisted.
	got, err = c.Query(t.Context(), r)
	if err != nil || !greylisted(got) {
		t.Fatalf("early retry = %q, %v", got, err)
	}
	time.Sleep((delay + 1) * time.Second)
	got, err = c.Query(t.Context(), r)
	if err != nil || !(strings.HasPrefix(got, "PREPEND X-Greylist: delayed ") || got == "DUNNO") {
		t.Fatalf("retry after the delay = %q, %v; want PREPEND X-Greylist: ... or DUNNO", got, err)
	}
	// Another triplet is greylisted on its own.
	r2 := *r
	r2.Sender = "other@client.example"
	if got, _ := c.Query(t.Context(), &r2); !strings.HasPrefix(got, "DEFER_IF_PERMIT") {
		t.Errorf("new triplet = %q", got)
	}
	if c.dials != 1 {
		t.Errorf("%d connections to postgrey, want 1 reused", c.dials)
	}
}
