package local

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/internal/cli"
	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/asuser"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
	"moat/internal/queue"
	"moat/internal/testutil"
)

// moatBin is the moat binary asuser runs as its child, built once by
// TestMain into a directory every test account can traverse.
var moatBin string

func TestMain(m *testing.M) {
	// When the build fails, this test binary is the child.
	if len(os.Args) == 2 && os.Args[1] == asuser.ChildVerb {
		os.Exit(asuser.ChildMain(cli.OS(), asuser.ChildVerb, nil))
	}
	os.Exit(testutil.RunWithMoat(m, "moat-local", &moatBin))
}

// fixture is one agent over a real queue, a real spool directory and
// real accounts, all under a directory every account can traverse.
type fixture struct {
	t     *testing.T
	base  string
	spool string
	q     *queue.Queue
	sink  *maillogtest.Sink
	agent *Agent
	now   time.Time
	cfDir string
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: accounts, identity changes")
	}
}

// newFixture writes main.cf (the base settings plus extra lines, where
// BASE stands for the fixture's directory) and an aliases table in
// texthash format, and starts an agent.
func newFixture(t *testing.T, extra string, aliasLines string) *fixture {
	t.Helper()
	needRoot(t)
	base := t.TempDir()
	for _, p := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{t: t, base: base, spool: filepath.Join(base, "spool"), sink: &maillogtest.Sink{},
		now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	if err := os.Mkdir(f.spool, 0o755); err != nil {
		t.Fatal(err)
	}
	// Debian's /var/mail: root:mail 2775.
	mailGID := 8
	if g, err := user.LookupGroup("mail"); err == nil {
		mailGID, _ = strconv.Atoi(g.Gid)
	}
	if err := os.Chown(f.spool, 0, mailGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f.spool, 0o2775|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"home", "cf"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "aliases"), []byte(strings.ReplaceAll(aliasLines, "BASE", base)), 0o644); err != nil {
		t.Fatal(err)
	}
	cf := "myhostname = mx.example.com\n" +
		"mydomain = example.com\n" +
		"myorigin = example.com\n" +
		"mydestination = example.com, localhost\n" +
		"recipient_delimiter = +\n" +
		"mail_spool_directory = " + f.spool + "\n" +
		"alias_maps = texthash:" + filepath.Join(base, "aliases") + "\n" +
		strings.ReplaceAll(extra, "BASE", base)
	cfDir := filepath.Join(base, "cf")
	if err := os.WriteFile(filepath.Join(cfDir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	f.cfDir = cfDir
	f.q, err = queue.Open(filepath.Join(base, "queue"), queue.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	f.start()
	return f
}

// start (re)creates the agent from the fixture's main.cf.
func (f *fixture) start() {
	t := f.t
	t.Helper()
	cfg, err := config.Load(f.cfDir)
	if err != nil {
		t.Fatal(err)
	}
	log := maillog.New(maillog.Options{Sink: f.sink, Fallback: f.sink, SyslogName: "postfix", Daemon: "local", PID: 1})
	t.Cleanup(func() { log.Close(context.Background()) })
	agent, err := New(delivery.Deps{
		Config:  cfg,
		Service: "local",
		Log:     log,
		Queue:   f.q,
		Self:    moatBin,
		Now:     func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close() })
	f.agent = agent
}

// reopen adds lines to main.cf and starts a new agent over the same
// files, for tables written after the first agent started.
func (f *fixture) reopen(extra string) *fixture {
	f.t.Helper()
	path := filepath.Join(f.cfDir, "main.cf")
	cf := readFile(f.t, path) + strings.ReplaceAll(extra, "BASE", f.base)
	if err := os.WriteFile(path, []byte(cf), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.start()
	return f
}

// newAgentErr returns New's error for a main.cf with extra lines.
func newAgentErr(t *testing.T, extra string) (*Agent, error) {
	t.Helper()
	dir := t.TempDir()
	cf := "mail_spool_directory = /var/mail\nalias_maps =\n" + extra
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return nil, err
	}
	a, err := New(delivery.Deps{Config: cfg, Self: moatBin})
	if err == nil {
		a.Close()
	}
	return a, err
}

// testAccount is a throw-away account with a home under the fixture.
type testAccount struct {
	name     string
	uid, gid int
	home     string
}

func (f *fixture) account() testAccount {
	f.t.Helper()
	name := "moatl" + strconv.Itoa(rand.IntN(1_000_000))
	home := filepath.Join(f.base, "home", name)
	out, err := exec.Command("useradd", "-m", "-d", home, "-s", "/bin/sh", name).CombinedOutput()
	if err != nil {
		f.t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	f.t.Cleanup(func() {
		if out, err := exec.Command("userdel", "-r", name).CombinedOutput(); err != nil {
			// userdel -r complains when the spool mailbox is not in
			// /var/mail; the account is gone all the same.
			if _, lerr := user.Lookup(name); lerr == nil {
				f.t.Errorf("userdel %s: %v\n%s", name, err, out)
			}
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		f.t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return testAccount{name: name, uid: uid, gid: gid, home: home}
}

const testContent = "From: sender@remote.example\r\nSubject: test\r\n\r\nFrom the start of a line\r\nhello\r\n"

func (f *fixture) request(sender, content string, rcpts ...string) *delivery.Request {
	env := &queue.Envelope{Sender: sender, Arrival: f.now.Add(-time.Minute), ClientAddr: "192.0.2.1",
		ClientName: "client.example", Helo: "client.example", Protocol: "ESMTP"}
	req := &delivery.Request{QueueID: "4dXq8K0Bblz6Vd3", Envelope: env, Nexthop: "example.com",
		Content: func() io.Reader { return strings.NewReader(content) }}
	for i, r := range rcpts {
		env.Recipients = append(env.Recipients, queue.Recipient{Address: r})
		req.Recipients = append(req.Recipients, delivery.Recipient{Index: i, Address: r})
	}
	return req
}

// deliver delivers to one recipient and returns its result.
func (f *fixture) deliver(rcpt string) delivery.Result {
	f.t.Helper()
	return f.deliverContent(rcpt, testContent)
}

func (f *fixture) deliverContent(rcpt, content string) delivery.Result {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := f.agent.Deliver(ctx, f.request("sender@remote.example", content, rcpt))
	if len(res) != 1 {
		f.t.Fatalf("%d results for one recipient", len(res))
	}
	if res[0].Relay != "local" {
		f.t.Errorf("relay %q", res[0].Relay)
	}
	if commit := res[0].Commit; commit != nil {
		// What the queue manager does before it records the result:
		// commit the staged Maildir writes.
		if err := commit(ctx); err != nil {
			f.t.Fatalf("committing the delivery: %v", err)
		}
		res[0].Commit = nil
	}
	return res[0]
}

func (f *fixture) logText() string {
	f.agent.d.Log.Flush(context.Background())
	return strings.Join(f.sink.Lines(maillogtest.Text), "\n")
}

// incoming returns the messages forwarded into incoming/.
func (f *fixture) incoming() []*queue.Message {
	f.t.Helper()
	ids, err := f.q.List(queue.Incoming)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*queue.Message
	for _, id := range ids {
		m, err := f.q.Open(queue.Incoming, id)
		if err != nil {
			f.t.Fatal(err)
		}
		f.t.Cleanup(func() { m.Close() })
		out = append(out, m)
	}
	return out
}

func content(t *testing.T, m *queue.Message) string {
	t.Helper()
	b, err := io.ReadAll(m.Content())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantState(t *testing.T, r delivery.Result, state queue.RcptState, dsn, reason string) {
	t.Helper()
	if r.State != state || r.DSN != dsn || !strings.Contains(r.Reason, reason) {
		t.Fatalf("result = %v %s %q (pass %q), want %v %s containing %q", r.State, r.DSN, r.Reason, r.Pass, state, dsn, reason)
	}
}

func recipients(m *queue.Message) []string {
	var out []string
	for _, r := range m.Envelope.Recipients {
		out = append(out, r.Address)
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, data string, mode os.FileMode, uid, gid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func maildirFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, readFile(t, filepath.Join(dir, "new", e.Name())))
	}
	return out
}
