package pipe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/queue"
)

// These tests run real commands as real throw-away accounts: they need
// root (as in CI).

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates accounts and runs commands as them")
	}
}

// newAccount creates a system account with its own group (useradd -r -M)
// and removes it when the test ends.
func newAccount(t *testing.T) *user.User {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "mpipe" + hex.EncodeToString(b)
	var out []byte
	var err error
	for try := 0; try < 5; try++ { // /etc/passwd may be locked by a neighbour
		out, err = exec.Command("useradd", "-r", "-M", "-U", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name).CombinedOutput()
		if err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		for try := 0; try < 5; try++ {
			if exec.Command("userdel", name).Run() == nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Errorf("userdel %s failed", name)
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// rig is a directory every account can read, with a script that records
// its argv, identity, environment, working directory and standard input
// in out/ (writable by all) and then runs tail.
type rig struct {
	dir, out, script string
}

func newRig(t *testing.T, tail string) *rig {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := &rig{dir: dir, out: filepath.Join(dir, "out"), script: filepath.Join(dir, "cmd")}
	if err := os.Mkdir(r.out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(r.out, 0o777); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`#!/bin/sh
o=%s
id -u > $o/uid
id -g > $o/gid
id -G > $o/groups
pwd > $o/pwd
env > $o/env
for a in "$@"; do printf '%%s\n' "$a"; done > $o/argv
cat > $o/stdin
%s
`, r.out, tail)
	if err := os.WriteFile(r.script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.out, name))
	if err != nil {
		t.Fatalf("the command did not record %s: %v", name, err)
	}
	return string(b)
}

func (r *rig) ran() bool {
	_, err := os.Stat(filepath.Join(r.out, "uid"))
	return err == nil
}

func testConfig(t *testing.T, over map[string]string) *config.Config {
	t.Helper()
	return config.Empty(t.TempDir()).WithOverrides(over)
}

func newAgent(t *testing.T, service, row string, over map[string]string) *Agent {
	t.Helper()
	ag, err := New(delivery.Deps{Config: testConfig(t, over), Service: service, Args: strings.Fields(row)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ag.Close() })
	return ag
}

const testMsg = "Subject: test\r\nFrom: a@example.org\r\n\r\nFrom here\r\n.dot\r\nend\r\n"

func request(msg string, rcpts ...string) *delivery.Request {
	req := &delivery.Request{
		QueueID: "4XyZ01", Nexthop: "Example.COM",
		Envelope: &queue.Envelope{Sender: "sender@example.org", ClientAddr: "192.0.2.7",
			Helo: "client.example", ClientName: "client.example", Protocol: "ESMTP", Size: int64(len(msg))},
		Content: func() io.Reader { return strings.NewReader(msg) },
	}
	for i, r := range rcpts {
		req.Recipients = append(req.Recipients, delivery.Recipient{Index: i + 10, Address: r})
	}
	return req
}

func deliverOne(t *testing.T, ag *Agent, req *delivery.Request) delivery.Result {
	t.Helper()
	res := ag.Deliver(context.Background(), req)
	if len(res) != len(req.Recipients) {
		t.Fatalf("%d results for %d recipients", len(res), len(req.Recipients))
	}
	for i, r := range res {
		if r.Index != req.Recipients[i].Index || r.Relay != ag.service {
			t.Errorf("result %d: index %d relay %q", i, r.Index, r.Relay)
		}
	}
	return res[0]
}

func want(t *testing.T, got delivery.Result, state queue.RcptState, dsn, reason string) {
	t.Helper()
	if got.State != state || got.DSN != dsn || got.Reason != reason {
		t.Errorf("got %v %s %q\nwant %v %s %q", got.State, got.DSN, got.Reason, state, dsn, reason)
	}
}

// TestDebianMaildropRow runs Debian's stock maildrop row, with a fake
// maildrop, and checks what the command got.
func TestDebianMaildropRow(t *testing.T) {
	requireRoot(t)
	u := newAccount(t)
	r := newRig(t, "exit 0")
	ag := newAgent(t, "maildrop", "flags=DRXhu user="+u.Username+" argv="+r.script+" -d ${recipient}",
		map[string]string{"recipient_delimiter": "+"})
	if !ag.FinalDelivery() {
		t.Error("flag X: FinalDelivery false")
	}
	got := deliverOne(t, ag, request(testMsg, "Joe+Tag@Example.COM"))
	want(t, got, queue.RcptDelivered, "2.0.0", "delivered via maildrop service")

	if a := r.read(t, "argv"); a != "-d\njoe+tag@example.com\n" {
		t.Errorf("argv %q", a)
	}
	if s := r.read(t, "stdin"); s != "Return-Path: <sender@example.org>\nDelivered-To: Joe+Tag@Example.COM\n"+
		"Subject: test\nFrom: a@example.org\n\nFrom here\n.dot\nend\n" {
		t.Errorf("stdin %q", s)
	}
	if id := strings.TrimSpace(r.read(t, "uid")); id != u.Uid {
		t.Errorf("uid %s, want %s", id, u.Uid)
	}
	if g := strings.TrimSpace(r.read(t, "gid")); g != u.Gid {
		t.Errorf("gid %s, want %s", g, u.Gid)
	}
	if g := strings.TrimSpace(r.read(t, "groups")); g != u.Gid {
		t.Errorf("groups %q, want only %s", g, u.Gid)
	}
	if d := strings.TrimSpace(r.read(t, "pwd")); d != "/" {
		t.Errorf("working directory %q", d)
	}
	for _, kv := range strings.Split(strings.TrimSpace(r.read(t, "env")), "\n") {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "PATH":
			if kv != "PATH=/usr/bin:/bin" {
				t.Errorf("env %q", kv)
			}
		case "TZ", "LANG", "MAIL_CONFIG", "PWD", "SHLVL", "_": // exported, or the shell's own
		default:
			t.Errorf("unexpected environment variable %q", kv)
		}
	}
}

func TestMultiRecipientExpansion(t *testing.T) {
	requireRoot(t)
	u := newAccount(t)
	r := newRig(t, "exit 0")
	ag := newAgent(t, "bsmtp", "flags=Fq.B user="+u.Username+":"+u.Username+
		" eol=\\r\\n argv="+r.script+" -f$sender -t$nexthop -- ${recipient} ${queue_id}", nil)
	req := request("a\r\n.b\r\n", "x y@a.example", "b@a.example", "c@b.example")
	res := ag.Deliver(context.Background(), req)
	for _, got := range res {
		want(t, got, queue.RcptDelivered, "2.0.0", "delivered via bsmtp service")
	}
	if ag.FinalDelivery() {
		t.Error("no X flag, but FinalDelivery")
	}
	if a := r.read(t, "argv"); a != "-fsender@example.org\n-tExample.COM\n--\n\"x y\"@a.example\nb@a.example\nc@b.example\n4XyZ01\n" {
		t.Errorf("argv %q", a)
	}
	s := r.read(t, "stdin")
	if !strings.HasPrefix(s, "From sender@example.org  ") || !strings.HasSuffix(s, "\r\na\r\n..b\r\n\r\n") {
		t.Errorf("stdin %q", s)
	}
}

func TestNullSender(t *testing.T) {
	requireRoot(t)
	u := newAccount(t)
	// null_sender= also replaces the sender in From_ and Return-Path:
	// (pipe(8)), quoted as an address.
	for _, tc := range []struct{ attr, want, rp string }{
		{"", "-f\nMAILER-DAEMON\n", "Return-Path: <MAILER-DAEMON>\n"},
		{"null_sender= ", "-f\n\n", "Return-Path: <>\n"},
		{"null_sender=<>", "-f\n<>\n", "Return-Path: <\"<>\">\n"},
	} {
		r := newRig(t, "exit 0")
		ag := newAgent(t, "filter", "user="+u.Username+" "+tc.attr+" flags=R argv="+r.script+" -f ${sender}", nil)
		req := request(testMsg, "a@b.example")
		req.Envelope.Sender = ""
		want(t, deliverOne(t, ag, req), queue.RcptDelivered, "2.0.0", "delivered via filter service")
		if a := r.read(t, "argv"); a != tc.want {
			t.Errorf("%q: argv %q, want %q", tc.attr, a, tc.want)
		}
		if s := r.read(t, "stdin"); !strings.HasPrefix(s, tc.rp) {
			t.Errorf("%q: stdin %q", tc.attr, s)
		}
	}
}

// TestExitStatus checks pipe_command()'s verdicts for each way a command
// can end.
func TestExitStatus(t *testing.T) {
	requireRoot(t)
	u := newAccount(t)
	for _, tc := range []struct {
		tail   string
		state  queue.RcptState
		dsn    string
		reason string // %s is the script
	}{
		{"exit 0", queue.RcptDelivered, "2.0.0", "delivered via svc service"},
		{"echo queued as 12345; exit 0", queue.RcptDelivered, "2.0.0", "delivered via svc service (queued as 12345)"},
		{"exit 67", queue.RcptBounced, "5.1.1", "user unknown"},
		{"echo 'no such user'; exit 67", queue.RcptBounced, "5.1.1", "user unknown. Command output: no such user "},
		{"exit 75", queue.RcptDeferred, "4.3.0", "temporary failure"},
		{"printf 'try\\tlater\\001'; exit 75", queue.RcptDeferred, "4.3.0", "temporary failure. Command output: try later_"},
		{"exit 1", queue.RcptBounced, "5.3.0", `Command died with status 1: "%s"`},
		{"echo boom >&2; exit 1", queue.RcptBounced, "5.3.0", `Command died with status 1: "%s". Command output: boom `},
		{"echo '4.2.2 mailbox full'; exit 1", queue.RcptDeferred, "4.2.2", "mailbox full"},
		{"echo '5.7.1 go away'; exit 75", queue.RcptBounced, "5.7.1", "go away"},
		{"kill -KILL $$", queue.RcptDeferred, "4.3.0", `Command died with signal 9: "%s"`},
	} {
		r := newRig(t, tc.tail)
		ag := newAgent(t, "svc", "user="+u.Username+" argv="+r.script, nil)
		got := deliverOne(t, ag, request(testMsg, "a@b.example"))
		reason := tc.reason
		if strings.Contains(reason, "%s") {
			reason = fmt.Sprintf(reason, r.script)
		}
		want(t, got, tc.state, tc.dsn, reason)
	}
}

func TestTimeLimit(t *testing.T) {
	requireRoot(t)
	u := newAccount(t)
	r := newRig(t, "echo slow; sleep 30")
	ag := newAgent(t, "slow", "user="+u.Username+" argv="+r.script, map[string]string{"slow_time_limit": "1s"})
	start := time.Now()
	got := deliverOne(t, ag, request(testMsg, "a@b.example"))
	want(t, got, queue.RcptDeferred, "4.3.0", `Command time limit exceeded: "`+r.script+`". Command output: slow `)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v with a 1s limit", d)
	}
	ag2 := newAgent(t, "other", "user="+u.Username+" argv=/bin/true", map[string]string{"command_time_limit": "7s"})
	if ag2.timeLimit != 7*time.Second || ag.timeLimit != time.Second {
		t.Errorf("time limits %v %v", ag2.timeLimit, ag.timeLimit)
	}
}

func TestBeforeRunning(t *testing.T) {
	requireRoot(t)
	u := newAccount(t)
	for _, tc := range []struct {
		row    string
		msg    string
		rcpts  []string
		state  queue.RcptState
		dsn    string
		reason string
	}{
		{"size=10", testMsg, []string{"a@b.example"}, queue.RcptBounced, "5.2.3", "message too large"},
		{"size=1000", testMsg, []string{"a@b.example"}, queue.RcptDelivered, "2.0.0", "delivered via svc service"},
		{"flags=D", testMsg, []string{"a@b.example", "c@b.example"}, queue.RcptDeferred, "4.3.5", "mail system configuration error"},
		{"flags=O", testMsg, []string{"a@b.example", "c@b.example"}, queue.RcptDeferred, "4.3.5", "mail system configuration error"},
		{"flags=D", "Delivered-To: A@B.example\r\n\r\nx\r\n", []string{"a@b.example"}, queue.RcptBounced, "5.4.6", "mail forwarding loop for a@b.example"},
		{"flags=D", "Delivered-To: other@b.example\r\n\r\nx\r\n", []string{"a@b.example"}, queue.RcptDelivered, "2.0.0", "delivered via svc service"},
	} {
		r := newRig(t, "exit 0")
		ag := newAgent(t, "svc", "user="+u.Username+" "+tc.row+" argv="+r.script, nil)
		res := ag.Deliver(context.Background(), request(tc.msg, tc.rcpts...))
		for _, got := range res {
			want(t, got, tc.state, tc.dsn, tc.reason)
		}
		if ran := r.ran(); ran != (tc.state == queue.RcptDelivered) {
			t.Errorf("%s: command ran: %v", tc.row, ran)
		}
	}
}

func TestDamagedMessageDefers(t *testing.T) {
	requireRoot(t)
	u := newAccount(t)
	r := newRig(t, "exit 0")
	ag := newAgent(t, "svc", "user="+u.Username+" argv="+r.script, nil)
	req := request(testMsg, "a@b.example")
	req.Content = func() io.Reader {
		return io.MultiReader(strings.NewReader("Subject: x\r\n"), iotest.ErrReader(errors.New("queue file content sum mismatch")))
	}
	want(t, deliverOne(t, ag, req), queue.RcptDeferred, "4.3.0", "error reading message: queue file content sum mismatch")
}

func TestDirectoryAndMissingCommand(t *testing.T) {
	requireRoot(t)
	u := newAccount(t)
	r := newRig(t, "exit 0")
	ag := newAgent(t, "svc", "user="+u.Username+" directory="+r.dir+" flags=O argv="+r.script, nil)
	req := request(testMsg, "a@b.example")
	req.Recipients[0].OrigAddress = "alias@b.example"
	want(t, deliverOne(t, ag, req), queue.RcptDelivered, "2.0.0", "delivered via svc service")
	if d := strings.TrimSpace(r.read(t, "pwd")); d != r.dir {
		t.Errorf("pwd %q, want %q", d, r.dir)
	}
	if s := r.read(t, "stdin"); !strings.HasPrefix(s, "X-Original-To: alias@b.example\nSubject") {
		t.Errorf("stdin %q", s)
	}
	ag = newAgent(t, "svc", "user="+u.Username+" argv=no-such-command-moat", nil)
	got := deliverOne(t, ag, request(testMsg, "a@b.example"))
	if got.State != queue.RcptDeferred || got.DSN != "4.3.0" || !strings.Contains(got.Reason, "no-such-command-moat") {
		t.Errorf("missing command: %+v", got)
	}
}

// TestNewRefuses checks the identities and rows pipe(8) refuses, and that
// each error names the service and the attribute.
func TestNewRefuses(t *testing.T) {
	requireRoot(t)
	u := newAccount(t)
	for _, tc := range []struct {
		row  string
		over map[string]string
		want string
	}{
		{"user=root argv=/bin/cat", nil, "user=root"},
		{"user=postfix argv=/bin/cat", nil, "mail system owner"},
		{"user=" + u.Username + " argv=/bin/cat", map[string]string{"mail_owner": u.Username}, "mail system owner"},
		{"user=" + u.Username + ":root argv=/bin/cat", nil, "group id 0"},
		{"user=" + u.Username + ":postdrop argv=/bin/cat", nil, "postdrop group id"},
		{"user=" + u.Username + ":postfix argv=/bin/cat", nil, "mail system owner postfix group id"},
		{"user=no-such-user-moat argv=/bin/cat", nil, "unknown username"},
		{"user=" + u.Username + ":no-such-group-moat argv=/bin/cat", nil, "unknown group"},
		{"argv=/bin/cat", nil, "missing user="},
		{"user=" + u.Username, nil, "missing argv="},
		{"user=" + u.Username + " chroot=/var/empty argv=/bin/cat", nil, "chroot= is not supported"},
		{"user=" + u.Username + " argv=/bin/cat ${bogus}", nil, `argv=: argument "${bogus}": unknown macro name`},
		{"user=" + u.Username + " argv=/bin/cat", map[string]string{"svc_time_limit": "soon"}, "svc_time_limit"},
	} {
		_, err := New(delivery.Deps{Config: testConfig(t, tc.over), Service: "svc", Args: strings.Fields(tc.row)})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "service svc") {
			t.Errorf("%q: got %v, want %q", tc.row, err, tc.want)
		}
	}
}

// TestConcurrentDeliveries runs one agent's deliveries at once, as the
// queue manager does up to the transport's process limit.
func TestConcurrentDeliveries(t *testing.T) {
	requireRoot(t)
	u := newAccount(t)
	r := newRig(t, "")
	script := filepath.Join(r.dir, "each")
	text := "#!/bin/sh\ncat > " + r.out + "/\"$1\"\nexit 0\n"
	if err := os.WriteFile(script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	ag := newAgent(t, "svc", "user="+u.Username+" flags=D argv="+script+" ${user}", nil)
	const n = 6
	done := make(chan []delivery.Result, n)
	for i := 0; i < n; i++ {
		go func() {
			done <- ag.Deliver(context.Background(), request(testMsg, fmt.Sprintf("u%d@b.example", i)))
		}()
	}
	for i := 0; i < n; i++ {
		res := <-done
		want(t, res[0], queue.RcptDelivered, "2.0.0", "delivered via svc service")
	}
	for i := 0; i < n; i++ {
		if s := r.read(t, fmt.Sprintf("u%d", i)); !strings.HasPrefix(s, fmt.Sprintf("Delivered-To: u%d@b.example\n", i)) {
			t.Errorf("u%d got %q", i, s)
		}
	}
}
