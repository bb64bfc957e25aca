package postqueue

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/cli"
	"moat/internal/queue"
	"moat/internal/queue/queuetest"
)

// fixture is a configuration directory and a queue in a temporary
// directory.
type fixture struct {
	cfg, qdir string
	q         *queue.Queue
}

func newFixture(t *testing.T, extra string) *fixture {
	t.Helper()
	qf := queuetest.New(t, extra)
	return &fixture{cfg: qf.ConfigDir, qdir: qf.QueueDir, q: qf.Queue}
}

// arrival is the fixed arrival time of every test message.
var arrival = time.Date(2026, 3, 7, 9, 5, 3, 0, time.UTC)

// add commits a message with content of size bytes and moves it to queue
// name; deferred maps recipient indexes to deferral reasons.
func (f *fixture) add(t *testing.T, name, sender string, size int, rcpts []string, deferred map[int]string) string {
	t.Helper()
	w, err := f.q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: test\n\n" + strings.Repeat("x", size)
	if _, err := w.WriteString(body[:size]); err != nil {
		t.Fatal(err)
	}
	w.Envelope.Sender = sender
	w.Envelope.Arrival = arrival
	for _, r := range rcpts {
		w.Envelope.Recipients = append(w.Envelope.Recipients, queue.Recipient{Address: r})
	}
	id, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if name != queue.Incoming {
		if err := f.q.Move(id, queue.Incoming, name); err != nil {
			t.Fatal(err)
		}
	}
	var ups []queue.RecipientUpdate
	for i, why := range deferred {
		st := queue.RcptDeferred
		if why == "DELIVERED" {
			st, why = queue.RcptDelivered, ""
		}
		ups = append(ups, queue.RecipientUpdate{Index: i, State: st, Reason: why})
	}
	if len(ups) > 0 {
		if err := f.q.UpdateRecipients(name, id, ups); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

func runPQ(t *testing.T, f *fixture, who Identity, mode byte, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string {
			if k == "MAIL_CONFIG" {
				return f.cfg
			}
			return ""
		}}
	code := run(env, "postqueue", args, caller{who: who, defaultDir: f.cfg, mode: mode})
	return code, out.String(), errb.String()
}

var root = Identity{UID: 0, Name: "root"}

func TestMailqEmpty(t *testing.T) {
	f := newFixture(t, "")
	code, out, errs := runPQ(t, f, root, 0, "-p")
	if code != 0 || out != "Mail queue is empty\n" || errs != "" {
		t.Fatalf("got %d %q %q", code, out, errs)
	}
	code, out, _ = runPQ(t, f, root, 0, "-j")
	if code != 0 || out != "" {
		t.Fatalf("-j on empty queue: %d %q", code, out)
	}
}

func TestMailqFormat(t *testing.T) {
	f := newFixture(t, "")
	long := strings.Repeat("l", 60) + "@" + strings.Repeat("d", 40) + ".example"
	reason := "connect to mx.example.net[192.0.2.1]:25: Connection timed out"
	longReason := "host mx.example.org[192.0.2.2] said: 450 4.2.0 <" + long + ">: Recipient address rejected: Greylisted"
	a := f.add(t, queue.Deferred, "alice@example.com", 2000, []string{"bob@example.net", "carol@example.net", "dave@example.org", "erin@example.org"},
		map[int]string{0: reason, 1: reason, 2: "DELIVERED", 3: longReason})
	b := f.add(t, queue.Hold, "", 500, []string{long}, nil)
	c := f.add(t, queue.Active, "x y@example.com", 1024, []string{"p@example.com", "q@example.com", "r@example.com"}, map[int]string{1: reason})
	d := f.add(t, queue.Incoming, "m@example.com", 10, []string{"n@example.com"}, nil)
	t.Setenv("TZ", "UTC")
	code, out, errs := runPQ(t, f, root, 0, "-p")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	ts := "Sat Mar  7 09:05:03"
	loc := time.Local
	if loc.String() != "UTC" {
		ts = arrival.In(loc).Format("Mon Jan _2 15:04:05")
	}
	want := "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n" +
		fmt.Sprintf("%-17s %8d %s %s\n", b+"!", 500, ts, "MAILER-DAEMON") +
		strings.Repeat(" ", 47) + long + "\n" +
		"\n" +
		fmt.Sprintf("%-17s %8d %s %s\n", d, 10, ts, "m@example.com") +
		strings.Repeat(" ", 47) + "n@example.com\n" +
		"\n" +
		fmt.Sprintf("%-17s %8d %s %s\n", c+"*", 1024, ts, `"x y"@example.com`) +
		strings.Repeat(" ", 47) + "p@example.com\n" +
		strings.Repeat(" ", 76-len(reason)) + "(" + reason + ")\n" +
		strings.Repeat(" ", 47) + "q@example.com\n" +
		strings.Repeat(" ", 58) + "(reason unavailable)\n" +
		strings.Repeat(" ", 47) + "r@example.com\n" +
		"\n" +
		fmt.Sprintf("%-17s %8d %s %s\n", a, 2000, ts, "alice@example.com") +
		strings.Repeat(" ", 76-len(reason)) + "(" + reason + ")\n" +
		strings.Repeat(" ", 47) + "bob@example.net\n" +
		strings.Repeat(" ", 47) + "carol@example.net\n" +
		"(" + longReason + ")\n" +
		strings.Repeat(" ", 47) + "erin@example.org\n" +
		"\n-- 3 Kbytes in 4 Requests.\n"
	if out != want {
		t.Errorf("mailq output:\n%s\nwant:\n%s", out, want)
	}

	code, out, _ = runPQ(t, f, root, 'p')
	if code != 0 || out != want {
		t.Errorf("mailq (default mode) differs from postqueue -p: %d\n%s", code, out)
	}

	code, out, _ = runPQ(t, f, root, 0, "-j")
	if code != 0 {
		t.Fatalf("-j exit %d", code)
	}
	sec := arrival.Unix()
	wantJ := fmt.Sprintf(`{"queue_name": "hold", "queue_id": "%s", "arrival_time": %d, "message_size": 500, "forced_expire": false, "sender": "MAILER-DAEMON", "recipients": [{"address": "%s"}]}`+"\n", b, sec, long) +
		fmt.Sprintf(`{"queue_name": "incoming", "queue_id": "%s", "arrival_time": %d, "message_size": 10, "forced_expire": false, "sender": "m@example.com", "recipients": [{"address": "n@example.com"}]}`+"\n", d, sec) +
		fmt.Sprintf(`{"queue_name": "active", "queue_id": "%s", "arrival_time": %d, "message_size": 1024, "forced_expire": false, "sender": "\"x y\"@example.com", "recipients": [{"address": "p@example.com"}, {"address": "q@example.com", "delay_reason": "%s"}, {"address": "r@example.com"}]}`+"\n", c, sec, reason) +
		fmt.Sprintf(`{"queue_name": "deferred", "queue_id": "%s", "arrival_time": %d, "message_size": 2000, "forced_expire": false, "sender": "alice@example.com", "recipients": [{"address": "bob@example.net", "delay_reason": "%s"}, {"address": "carol@example.net", "delay_reason": "%s"}, {"address": "erin@example.org", "delay_reason": "%s"}]}`+"\n", a, sec, reason, reason, longReason)
	if out != wantJ {
		t.Errorf("postqueue -j:\n%s\nwant:\n%s", out, wantJ)
	}
}

func TestMailqOneRequest(t *testing.T) {
	f := newFixture(t, "empty_address_recipient = postmaster\n")
	f.add(t, queue.Deferred, "", 4096, []string{"a@example.com"}, map[int]string{0: "x"})
	_, out, _ := runPQ(t, f, root, 0, "-p")
	if !strings.HasSuffix(out, "\n-- 4 Kbytes in 1 Request.\n") || !strings.Contains(out, " postmaster\n") {
		t.Errorf("got %q", out)
	}
}

func TestAuthorizedMailqUsers(t *testing.T) {
	f := newFixture(t, "authorized_mailq_users = !mallory, static:anyone\nauthorized_flush_users = alice\nmail_owner = nosuchuser-moat\n")
	bob := Identity{UID: 4242, Name: "bob"}
	mallory := Identity{UID: 4243, Name: "mallory"}
	if code, _, errs := runPQ(t, f, bob, 0, "-p"); code != 0 {
		t.Errorf("bob refused: %s", errs)
	}
	code, _, errs := runPQ(t, f, mallory, 0, "-p")
	if code != 1 || errs != "postqueue: fatal: User mallory(4243) is not allowed to view the mail queue\n" {
		t.Errorf("mallory: %d %q", code, errs)
	}
	code, _, errs = runPQ(t, f, bob, 0, "-f")
	if code != 1 || errs != "postqueue: fatal: User bob(4242) is not allowed to flush the mail queue\n" {
		t.Errorf("bob flush: %d %q", code, errs)
	}
}

func TestOtherConfigDirNeedsRoot(t *testing.T) {
	f := newFixture(t, "")
	var out, errb bytes.Buffer
	env := &cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code := run(env, "postqueue", []string{"-c", f.cfg, "-p"}, caller{who: Identity{UID: 4242, Name: "bob"}, defaultDir: cli.DefaultConfigDir})
	errs := errb.String()
	if code != 1 || !strings.Contains(errs, "only the super-user") {
		t.Errorf("got %d %q", code, errs)
	}
}

func TestFlushRequests(t *testing.T) {
	f := newFixture(t, "")
	code, _, errs := runPQ(t, f, root, 0, "-f")
	if code != 1 || !strings.HasSuffix(errs, "postqueue: fatal: "+downMsg+"\n") {
		t.Fatalf("without public/: %d %q", code, errs)
	}
	if err := os.Mkdir(filepath.Join(f.qdir, TriggerDir), 0o755); err != nil {
		t.Fatal(err)
	}
	id := queue.MakeID(arrival, 12345)
	for _, args := range [][]string{{"-f"}, {"-i", id}, {"-s", "example.com"}} {
		if code, _, errs := runPQ(t, f, root, 0, args...); code != 0 {
			t.Fatalf("%v: %d %q", args, code, errs)
		}
		time.Sleep(time.Millisecond) // request names order by time
	}
	got, err := TakeRequests(f.qdir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Request{{Kind: FlushAll}, {Kind: FlushID, Arg: id}, {Kind: FlushSite, Arg: "example.com"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests %v, want %v", got, want)
	}
	if again, _ := TakeRequests(f.qdir); len(again) != 0 {
		t.Errorf("requests not removed: %v", again)
	}
	if code, _, errs := runPQ(t, f, root, 0, "-i", "not-an-id"); code != 1 || !strings.Contains(errs, "invalid queue ID") {
		t.Errorf("bad -i: %d %q", code, errs)
	}
}

func TestUsage(t *testing.T) {
	f := newFixture(t, "")
	for _, args := range [][]string{{}, {"-p", "-f"}, {"-x"}, {"-p", "extra"}} {
		code, _, errs := runPQ(t, f, root, 0, args...)
		if code != 1 || !strings.Contains(errs, usage) {
			t.Errorf("%v: %d %q", args, code, errs)
		}
	}
}

func TestParseRequest(t *testing.T) {
	for line, ok := range map[string]bool{"flush": true, "flush x": false, "flush-site a.example": true,
		"flush-site ": false, "flush-id bad": false, "nonsense": false} {
		if _, got := ParseRequest(line); got != ok {
			t.Errorf("ParseRequest(%q) = %v, want %v", line, got, ok)
		}
	}
}

func TestPrintable(t *testing.T) {
	infos := []queue.Info{{ID: "4jXc8C59mkz1SChH", Queue: "deferred", Size: 1, Arrival: arrival,
		Sender:     "evil\x1b[2J@example.com",
		Recipients: []queue.Recipient{{Address: "ünï@example.com", Reason: "bad\r\nreply\xff\u0085"}}}}
	var out bytes.Buffer
	if err := WriteMailq(&out, infos, Format{Location: time.UTC}); err != nil {
		t.Fatal(err)
	}
	want := "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n" +
		"4jXc8C59mkz1SChH         1 Sat Mar  7 09:05:03 \"evil?[2J\"@example.com\n" +
		strings.Repeat(" ", 76-len("bad??reply??")) + "(bad??reply??)\n" +
		strings.Repeat(" ", 47) + "ünï@example.com\n" +
		"\n-- 0 Kbytes in 1 Request.\n"
	if out.String() != want {
		t.Errorf("got\n%q\nwant\n%q", out.String(), want)
	}
	out.Reset()
	if err := WriteJSON(&out, infos, Format{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"sender": "\"evil?[2J\"@example.com"`) || !strings.Contains(out.String(), `"delay_reason": "bad??reply??"`) {
		t.Errorf("JSON not sanitized: %s", out.String())
	}
}
