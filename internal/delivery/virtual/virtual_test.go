package virtual

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
	"moat/internal/queue"
)

const vuid = 5000

const vmailbox = `alice@example.com   example.com/alice/
bob@example.com     example.com/bob
@catchall.test      example.com/catchall/
evil@example.com    ../../../tmp/evil/
`

type fixture struct {
	t     *testing.T
	base  string
	sink  *maillogtest.Sink
	agent *Agent
}

func newFixture(t *testing.T, extra string) *fixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: deliveries run as uid 5000")
	}
	top := t.TempDir()
	for _, p := range []string{filepath.Dir(top), top} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	base := filepath.Join(top, "vmail")
	dom := filepath.Join(base, "example.com")
	if err := os.MkdirAll(dom, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dom, vuid, vuid); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "vmailbox"), []byte(vmailbox), 0o644); err != nil {
		t.Fatal(err)
	}
	cfDir := filepath.Join(top, "cf")
	if err := os.Mkdir(cfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cf := "myhostname = mx.example.net\nmydomain = example.net\nmyorigin = example.net\n" +
		"recipient_delimiter = +\n" +
		"virtual_mailbox_base = " + base + "\n" +
		"virtual_mailbox_maps = texthash:" + filepath.Join(top, "vmailbox") + "\n" +
		"virtual_uid_maps = static:5000\nvirtual_gid_maps = static:5000\n" +
		"deliver_lock_delay = 1s\n" + extra
	if err := os.WriteFile(filepath.Join(cfDir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfDir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, base: base, sink: &maillogtest.Sink{}}
	log := maillog.New(maillog.Options{Sink: f.sink, Fallback: f.sink, SyslogName: "postfix", Daemon: "virtual", PID: 1})
	t.Cleanup(func() { log.Close(context.Background()) })
	f.agent, err = New(delivery.Deps{Config: cfg, Service: "virtual", Log: log, Self: moatBin,
		Now: func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.agent.Close() })
	return f
}

const content = "Subject: test\r\n\r\nFrom the body\r\n"

func (f *fixture) deliver(qid string, rcpts ...string) []delivery.Result {
	f.t.Helper()
	req := &delivery.Request{
		QueueID:  qid,
		Envelope: &queue.Envelope{Sender: "sender@example.org", Arrival: time.Unix(1700000000, 0)},
		Content:  func() io.Reader { return strings.NewReader(content) },
	}
	for i, r := range rcpts {
		req.Recipients = append(req.Recipients, delivery.Recipient{Index: i, Address: r})
	}
	res := f.agent.Deliver(context.Background(), req)
	if len(res) != len(rcpts) {
		f.t.Fatalf("%d results for %d recipients", len(res), len(rcpts))
	}
	return res
}

func (f *fixture) warnings() string {
	f.agent.d.Log.Flush(context.Background())
	return strings.Join(f.sink.Lines(maillogtest.Text), "\n")
}

func want(t *testing.T, r delivery.Result, state queue.RcptState, dsn, reason string) {
	t.Helper()
	if r.State != state || r.DSN != dsn || r.Reason != reason || r.Relay != "virtual" {
		t.Errorf("result %+v, want %v %s %q relay=virtual", r, state, dsn, reason)
	}
}

func ownedBy(t *testing.T, path string, uid uint32) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != uid {
		t.Errorf("%s owned by %d:%d, want %d:%d", path, st.Uid, st.Gid, uid, uid)
	}
}

func newFiles(t *testing.T, md string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(md, "new"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(md, "new", e.Name()))
	}
	return out
}

func TestMaildirAndExtension(t *testing.T) {
	f := newFixture(t, "")
	res := f.deliver("4ABCDEF", "alice@example.com", "Alice+lists@Example.COM")
	for _, r := range res {
		want(t, r, queue.RcptDelivered, "2.0.0", "delivered to maildir")
		if !r.Replayable {
			t.Errorf("keyed maildir delivery not replayable")
		}
	}
	md := filepath.Join(f.base, "example.com", "alice")
	files := newFiles(t, md)
	if len(files) != 2 {
		t.Fatalf("%d files in new/, want 2", len(files))
	}
	ownedBy(t, md, vuid)
	for _, p := range files {
		ownedBy(t, p, vuid)
	}
	b, _ := os.ReadFile(files[0])
	if !strings.HasPrefix(string(b), "Return-Path: <sender@example.org>\nX-Original-To: ") ||
		!strings.Contains(string(b), "Delivered-To: ") || !strings.HasSuffix(string(b), "Subject: test\n\nFrom the body\n") {
		t.Errorf("message:\n%s", b)
	}
	// The same queue ID and recipient again: the keyed name is found,
	// nothing is added.
	f.deliver("4ABCDEF", "alice@example.com")
	if n := len(newFiles(t, md)); n != 2 {
		t.Errorf("replayed delivery added a file: %d", n)
	}
}

func TestMbox(t *testing.T) {
	f := newFixture(t, "")
	for i := 0; i < 2; i++ {
		want(t, f.deliver("5B", "bob@example.com")[0], queue.RcptDelivered, "2.0.0", "delivered to mailbox")
	}
	p := filepath.Join(f.base, "example.com", "bob")
	ownedBy(t, p, vuid)
	b, _ := os.ReadFile(p)
	s := string(b)
	if strings.Count(s, "\nFrom sender@example.org  ") != 1 || !strings.HasPrefix(s, "From sender@example.org  ") ||
		strings.Count(s, "\n>From the body\n") != 2 || !strings.HasSuffix(s, "\n\n") {
		t.Errorf("mbox:\n%s", s)
	}
	if _, err := os.Stat(p + ".lock"); !os.IsNotExist(err) {
		t.Errorf("dot-lock left")
	}
}

func TestCatchAllAndUnknown(t *testing.T) {
	f := newFixture(t, "")
	res := f.deliver("6C", "anyone@catchall.test", "nobody@example.com", "Nobody@Nowhere.test")
	want(t, res[0], queue.RcptDelivered, "2.0.0", "delivered to maildir")
	want(t, res[1], queue.RcptBounced, "5.1.1", `unknown user: "nobody@example.com"`)
	want(t, res[2], queue.RcptBounced, "5.1.1", `unknown user: "nobody@nowhere.test"`)
	if n := len(newFiles(t, filepath.Join(f.base, "example.com", "catchall"))); n != 1 {
		t.Errorf("catch-all got %d", n)
	}
}

func TestEscapeRefused(t *testing.T) {
	f := newFixture(t, "")
	want(t, f.deliver("7D", "evil@example.com")[0], queue.RcptDeferred, "4.3.5", "mail system configuration error")
	if w := f.warnings(); !strings.Contains(w, "warning: recipient evil@example.com: mailbox path \"../../../tmp/evil/\" in virtual_mailbox_maps leaves virtual_mailbox_base") {
		t.Errorf("warnings:\n%s", w)
	}
}

func TestMinimumUID(t *testing.T) {
	f := newFixture(t, "virtual_uid_maps = static:50\n")
	want(t, f.deliver("8E", "alice@example.com")[0], queue.RcptDeferred, "4.3.5", "mail system configuration error")
	if w := f.warnings(); !strings.Contains(w, "warning: recipient alice@example.com: bad uid 50 in virtual_uid_maps") {
		t.Errorf("warnings:\n%s", w)
	}
	if _, err := os.Stat(filepath.Join(f.base, "example.com", "alice")); !os.IsNotExist(err) {
		t.Errorf("mailbox made for a refused uid")
	}
}

func TestNoUID(t *testing.T) {
	f := newFixture(t, "virtual_uid_maps =\n")
	want(t, f.deliver("9F", "alice@example.com")[0], queue.RcptDeferred, "4.3.5", "mail system configuration error")
	if w := f.warnings(); !strings.Contains(w, "warning: recipient alice@example.com: not found in virtual_uid_maps") {
		t.Errorf("warnings:\n%s", w)
	}
}

func TestMailboxLimit(t *testing.T) {
	f := newFixture(t, "virtual_mailbox_limit = 40\n")
	r := f.deliver("A1", "bob@example.com")[0]
	p := filepath.Join(f.base, "example.com", "bob")
	want(t, r, queue.RcptBounced, "5.2.2", "delivery failed to mailbox "+p+": error writing message: File too large")
	if b, err := os.ReadFile(p); err == nil && len(b) != 0 {
		t.Errorf("partial message left: %q", b)
	}
}

func TestPermissionDefers(t *testing.T) {
	f := newFixture(t, "")
	if err := os.Chown(filepath.Join(f.base, "example.com"), 0, 0); err != nil {
		t.Fatal(err)
	}
	r := f.deliver("B2", "alice@example.com", "bob@example.com")
	if r[0].State != queue.RcptDeferred || !strings.HasPrefix(r[0].Reason, "maildir delivery failed: create maildir file") {
		t.Errorf("maildir: %+v", r[0])
	}
	if r[1].State != queue.RcptDeferred || !strings.HasPrefix(r[1].Reason, "delivery failed to mailbox ") {
		t.Errorf("mbox: %+v", r[1])
	}
}

func TestConfig(t *testing.T) {
	for _, p := range []string{"virtual_mailbox_base = relative\n", "virtual_mailbox_lock = fcntl, bogus\n"} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "main.cf"), []byte(p), 0o644)
		cfg, err := config.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(delivery.Deps{Config: cfg}); err == nil {
			t.Errorf("%q accepted", p)
		}
		if a, err := delivery.Factory(New)(delivery.Deps{Config: cfg}); err == nil || a != nil {
			t.Errorf("Factory(%q) = %v, %v", p, a, err)
		}
	}
	if atol(" 5000x") != 5000 || atol("x") != 0 || atol("-1") != -1 {
		t.Error("atol")
	}
}
