package pickup

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"moat/internal/cleanup"
	"moat/internal/config"
	"moat/internal/maildrop"
	"moat/internal/maillog"
	"moat/internal/maillog/maillogtest"
	"moat/internal/maps"
	"moat/internal/queue"
)

type fixture struct {
	p     *Pickup
	q     *queue.Queue
	sink  *maillogtest.Sink
	drop  string
	wakes atomic.Int32
}

func newFixture(t *testing.T, mainCF string) *fixture {
	t.Helper()
	dir := t.TempDir()
	cf := "myhostname = mx.example\nmydomain = example\nqueue_directory = " + dir + "/spool\n" + mainCF
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(filepath.Join(dir, "spool"), queue.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := cleanup.FromConfig(cfg, maps.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	f := &fixture{q: q, sink: &maillogtest.Sink{}, drop: filepath.Join(dir, "spool", "maildrop")}
	log := maillog.New(maillog.Options{Sink: f.sink, SyslogName: "postfix", Daemon: "pickup", PID: 7})
	t.Cleanup(func() {
		ctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		log.Close(ctx)
	})
	f.p, err = New(Deps{Config: cfg, Log: log, Queue: q, Cleanup: cs, Wake: func() { f.wakes.Add(1) },
		Now: func() time.Time { return time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) log(t *testing.T) string {
	ctx, c := context.WithTimeout(context.Background(), 5*time.Second)
	defer c()
	f.p.d.Log.Flush(ctx)
	return strings.Join(f.sink.Lines(func(r maillog.Record) string { return r.Tag + ": " + maillogtest.Text(r) }), "\n")
}

func (f *fixture) submit(t *testing.T, env *maildrop.Envelope, content string) string {
	t.Helper()
	p, err := maildrop.Create(f.drop)
	if err != nil {
		t.Fatal(err)
	}
	w, err := maildrop.NewWriter(p, env, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, content)
	w.Close()
	name, err := p.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func (f *fixture) only(t *testing.T) (*queue.Envelope, string) {
	t.Helper()
	ids, err := f.q.List(queue.Incoming)
	if err != nil || len(ids) != 1 {
		t.Fatalf("incoming: %v %v", ids, err)
	}
	m, err := f.q.Open(queue.Incoming, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, _ := io.ReadAll(m.Content())
	return &m.Envelope, string(b)
}

func TestPickup(t *testing.T) {
	f := newFixture(t, "")
	f.submit(t, &maildrop.Envelope{Sender: "joe", FullName: "Joe Q", Recipients: []string{"amy", "bo@other.example"}, Notify: "never"},
		"Subject: hi\r\nBcc: secret@example\r\nReturn-Path: <x@y>\r\n\r\nbody\r\n")
	n, err := f.p.Scan()
	if err != nil || n != 1 || f.wakes.Load() != 1 {
		t.Fatalf("Scan = %d, %v; wakes %d", n, err, f.wakes.Load())
	}
	env, content := f.only(t)
	if env.Sender != "joe@mx.example" || len(env.Recipients) != 2 || env.Recipients[0].Address != "amy@mx.example" || env.Recipients[1].Address != "bo@other.example" {
		t.Errorf("envelope %+v", env)
	}
	uid := os.Getuid()
	for _, want := range []string{
		"Received: by mx.example (moat, from userid ",
		"\tid ", "Subject: hi\r\n", "From: Joe Q <joe@mx.example>\r\n", "Message-Id: <",
	} {
		if !strings.Contains(content, want) {
			t.Errorf("content lacks %q:\n%s", want, content)
		}
	}
	if strings.Contains(content, "Bcc:") || strings.Contains(content, "Return-Path:") {
		t.Errorf("message_drop_headers kept:\n%s", content)
	}
	log := f.log(t)
	for _, want := range []string{"postfix/pickup: ", ": uid=" + itoa(uid) + " from=<joe>", "postfix/cleanup: ", ": message-id=<"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if ents, _ := os.ReadDir(f.drop); len(ents) != 0 {
		t.Errorf("maildrop/ still holds %v", ents)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestHostileFiles: what postdrop would never write is removed with a
// warning and queues nothing: garbage, a symbolic link, a hard link, an
// unexpected name. An unfinished file is left alone until it is stale.
func TestHostileFiles(t *testing.T) {
	f := newFixture(t, "")
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("secret"), 0o644)
	f.submit(t, &maildrop.Envelope{Sender: "a", Recipients: []string{"b"}}, "x\r\n")
	os.WriteFile(filepath.Join(f.drop, strings.Repeat("A", 32)), []byte("MOATDROP 1\ngarbage"), 0o644)
	os.Symlink(victim, filepath.Join(f.drop, strings.Repeat("B", 32)))
	if err := os.Link(victim, filepath.Join(f.drop, strings.Repeat("C", 32))); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(f.drop, "junk"), nil, 0o644)
	os.WriteFile(filepath.Join(f.drop, "t."+strings.Repeat("D", 32)), nil, 0o644)
	n, err := f.p.Scan()
	if err != nil || n != 1 {
		t.Fatalf("Scan = %d, %v; want only the good file queued", n, err)
	}
	ents, _ := os.ReadDir(f.drop)
	if len(ents) != 1 || ents[0].Name() != "t."+strings.Repeat("D", 32) {
		t.Errorf("maildrop/ holds %v, want only the unfinished file", ents)
	}
	if ids, _ := f.q.List(queue.Incoming); len(ids) != 1 {
		t.Errorf("queued %v", ids)
	}
	if b, _ := os.ReadFile(victim); string(b) != "secret" {
		t.Error("the link's target changed")
	}
	log := f.log(t)
	for _, want := range []string{"malformed input", "hard links", "unexpected file name"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// A stale unfinished file goes.
	old := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	os.Chtimes(filepath.Join(f.drop, "t."+strings.Repeat("D", 32)), old, old)
	f.p.Scan()
	if ents, _ := os.ReadDir(f.drop); len(ents) != 0 {
		t.Errorf("stale file kept: %v", ents)
	}
}

// TestRewriteError: a rewrite failure leaves the file for the next scan.
func TestRewriteError(t *testing.T) {
	f := newFixture(t, "")
	f.submit(t, &maildrop.Envelope{Sender: "a", Recipients: []string{"b"}}, "x\r\n")
	fail := true
	f.p.d.Rewrite = func(e *queue.Envelope) error {
		if fail {
			return os.ErrDeadlineExceeded
		}
		e.Recipients[0].Address = "rewritten@example"
		return nil
	}
	if n, _ := f.p.Scan(); n != 0 {
		t.Fatal("queued despite the rewrite error")
	}
	fail = false
	if n, _ := f.p.Scan(); n != 1 {
		t.Fatal("not queued on retry")
	}
	if env, _ := f.only(t); env.Recipients[0].Address != "rewritten@example" {
		t.Errorf("recipients %+v", env.Recipients)
	}
}

func TestHeaderFilter(t *testing.T) {
	var b strings.Builder
	h := &headerFilter{w: &b, drop: map[string]bool{"bcc": true}}
	in := "To: a\r\nBcc: x,\r\n y\r\nMessage-ID:  <id@x>\r\n\r\nBcc: body line\r\n"
	for i := 0; i < len(in); i += 3 {
		end := min(i+3, len(in))
		h.Write([]byte(in[i:end]))
	}
	h.Close()
	if got := b.String(); got != "To: a\r\nMessage-ID:  <id@x>\r\n\r\nBcc: body line\r\n" || h.messageID != "<id@x>" {
		t.Errorf("got %q, id %q", got, h.messageID)
	}
}

// FuzzHeaderFilter: the filter loses nothing but dropped headers, however
// the input is split.
func FuzzHeaderFilter(f *testing.F) {
	f.Add("To: a\r\nBcc: b\r\n\r\nbody", 3)
	f.Add("Bcc: x\r\n folded\r\nX: y", 1)
	f.Add("no header\r\nBcc: z\r\n", 5)
	f.Fuzz(func(t *testing.T, in string, step int) {
		if step <= 0 || step > 64 {
			step = 7
		}
		var b strings.Builder
		h := &headerFilter{w: &b, drop: map[string]bool{"bcc": true}}
		for i := 0; i < len(in); i += step {
			if _, err := h.Write([]byte(in[i:min(i+step, len(in))])); err != nil {
				t.Fatal(err)
			}
		}
		h.Close()
		out := b.String()
		if len(out) > len(in) {
			t.Fatalf("output longer than input: %q from %q", out, in)
		}
		if !strings.Contains(strings.ToLower(in), "bcc") && out != in {
			t.Fatalf("changed without a Bcc: %q from %q", out, in)
		}
	})
}

// TestTwoPickups: two pickups on one maildrop/ (as during a reload) queue
// each file once.
func TestTwoPickups(t *testing.T) {
	f := newFixture(t, "")
	for i := 0; i < 20; i++ {
		f.submit(t, &maildrop.Envelope{Sender: "a", Recipients: []string{"b"}}, "x\r\n")
	}
	g, err := New(f.p.d)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	go func() { n, _ := g.Scan(); done <- n }()
	n, _ := f.p.Scan()
	n += <-done
	ids, _ := f.q.List(queue.Incoming)
	if n != 20 || len(ids) != 20 {
		t.Errorf("queued %d (%d files), want 20", n, len(ids))
	}
}

// content_filter applies to local submissions too; mail header_checks
// reject is queued for error(8), so its sender gets a bounce rather than
// the mail vanishing (Postfix's cleanup bounces it).
func TestContentFilterAndReject(t *testing.T) {
	hc := filepath.Join(t.TempDir(), "header_checks")
	if err := os.WriteFile(hc, []byte("/^Subject: spam/ REJECT no spam here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, "content_filter = scan:[127.0.0.1]:10025\nheader_checks = regexp:"+hc+"\n")
	f.submit(t, &maildrop.Envelope{Sender: "joe", Recipients: []string{"amy"}}, "Subject: hi\r\n\r\nbody\r\n")
	if _, err := f.p.Scan(); err != nil {
		t.Fatal(err)
	}
	env, _ := f.only(t)
	if env.Filter != "scan:[127.0.0.1]:10025" {
		t.Errorf("Filter = %q", env.Filter)
	}
	m, _ := f.q.List(queue.Incoming)
	if err := f.q.Remove(queue.Incoming, m[0]); err != nil {
		t.Fatal(err)
	}
	f.submit(t, &maildrop.Envelope{Sender: "joe", Recipients: []string{"amy"}}, "Subject: spam\r\n\r\nbody\r\n")
	if _, err := f.p.Scan(); err != nil {
		t.Fatal(err)
	}
	env, _ = f.only(t)
	if env.Filter != "error:5.7.1 no spam here" {
		t.Errorf("rejected mail: Filter = %q", env.Filter)
	}
	if log := f.log(t); !strings.Contains(log, ": reject: 5.7.1 no spam here; from=<joe@mx.example>") {
		t.Errorf("log:\n%s", log)
	}
}
