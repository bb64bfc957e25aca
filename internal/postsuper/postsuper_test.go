package postsuper

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"testing"

	"moat/internal/cli"
	"moat/internal/queue"
	"moat/internal/queue/queuetest"
)

type fixture struct {
	cfg string
	q   *queue.Queue
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	qf := queuetest.New(t, "")
	return &fixture{cfg: qf.ConfigDir, q: qf.Queue}
}

func (f *fixture) add(t *testing.T, name string) string {
	t.Helper()
	w, err := f.q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("Subject: x\n\nbody\n")
	w.Envelope.Sender = "a@example.com"
	w.Envelope.Recipients = []queue.Recipient{{Address: "b@example.com"}}
	id, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if name != queue.Incoming {
		if err := f.q.Move(id, queue.Incoming, name); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// where returns the queue of every message, as "queue:ID" sorted.
func (f *fixture) where(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, n := range queue.Names() {
		ids, err := f.q.List(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			out = append(out, n+":"+id)
		}
	}
	sort.Strings(out)
	return out
}

func (f *fixture) run(t *testing.T, uid int, stdin string, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string {
			if k == "MAIL_CONFIG" {
				return f.cfg
			}
			return ""
		}}
	code := run(env, "postsuper", args, uid)
	if out.Len() > 0 {
		t.Errorf("postsuper wrote to stdout: %q", out.String())
	}
	return code, errb.String()
}

func sorted(s ...string) []string { sort.Strings(s); return s }

func TestSuperUserOnly(t *testing.T) {
	f := newFixture(t)
	code, errs := f.run(t, 1000, "", "-d", "ALL")
	if code != 1 || errs != "postsuper: fatal: use of this command is reserved for the superuser\n" {
		t.Errorf("got %d %q", code, errs)
	}
}

func TestDelete(t *testing.T) {
	f := newFixture(t)
	a := f.add(t, queue.Deferred)
	b := f.add(t, queue.Hold)
	c := f.add(t, queue.Incoming)
	code, errs := f.run(t, 0, "", "-d", a)
	if want := fmt.Sprintf("postsuper: %s: removed\npostsuper: Deleted: 1 message\n", a); code != 0 || errs != want {
		t.Errorf("-d ID: %d %q, want %q", code, errs, want)
	}
	// A message that is gone, or in a queue not named, is not touched.
	code, errs = f.run(t, 0, "", "-d", a, "-d", c, "deferred")
	if code != 0 || errs != "" {
		t.Errorf("-d gone: %d %q", code, errs)
	}
	code, errs = f.run(t, 0, "", "-d", "ALL")
	want := "postsuper: Deleted: 2 messages\n"
	_, _ = b, c
	if code != 0 || errs != want {
		t.Errorf("-d ALL: %d %q, want %q", code, errs, want)
	}
	if got := f.where(t); len(got) != 0 {
		t.Errorf("left: %v", got)
	}
}

func TestDeleteStdin(t *testing.T) {
	f := newFixture(t)
	a := f.add(t, queue.Deferred)
	b := f.add(t, queue.Active)
	c := f.add(t, queue.Hold)
	code, errs := f.run(t, 0, a+"\n\n"+b+"\n"+c+" trailing words\n", "-d", "-", "-h", "-")
	want := fmt.Sprintf("postsuper: %s: removed\npostsuper: warning: invalid mail queue id: \npostsuper: %s: removed\npostsuper: warning: invalid mail queue id: %s trailing words\npostsuper: Deleted: 2 messages\n", a, b, c)
	if code != 0 || errs != want {
		t.Errorf("-d -: %d %q, want %q", code, errs, want)
	}
	if got, want := f.where(t), []string{"hold:" + c}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("left %v, want %v", got, want)
	}
}

func TestHoldReleaseRequeue(t *testing.T) {
	f := newFixture(t)
	a := f.add(t, queue.Deferred)
	b := f.add(t, queue.Incoming)
	c := f.add(t, queue.Hold)
	code, errs := f.run(t, 0, "", "-h", "ALL")
	if code != 0 || errs != "postsuper: Placed on hold: 2 messages\n" {
		t.Errorf("-h ALL: %d %q", code, errs)
	}
	if got, want := f.where(t), sorted("hold:"+a, "hold:"+b, "hold:"+c); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after -h: %v, want %v", got, want)
	}
	code, errs = f.run(t, 0, "", "-H", a)
	if want := fmt.Sprintf("postsuper: %s: released from hold\npostsuper: Released from hold: 1 message\n", a); code != 0 || errs != want {
		t.Errorf("-H: %d %q, want %q", code, errs, want)
	}
	// Holding what is already held finds nothing to do.
	if code, errs = f.run(t, 0, "", "-h", c); code != 0 || errs != "" {
		t.Errorf("-h held: %d %q", code, errs)
	}
	code, errs = f.run(t, 0, "", "-r", b, "-r", a)
	want := fmt.Sprintf("postsuper: %s: requeued\npostsuper: %s: requeued\npostsuper: Requeued: 2 messages\n", b, a)
	if code != 0 || errs != want {
		t.Errorf("-r: %d %q, want %q", code, errs, want)
	}
	// A requeued message is a new queue file (postsuper(1): pickup and
	// cleanup copy it), so it has a new ID.
	in := f.ids(t, queue.Incoming)
	if len(in) != 2 || in[0] == a || in[0] == b || in[1] == a || in[1] == b || fmt.Sprint(f.ids(t, queue.Hold)) != fmt.Sprint([]string{c}) {
		t.Errorf("after -r: %v", f.where(t))
	}
	// Requeueing from incoming copies it again.
	if code, errs = f.run(t, 0, "", "-r", in[0], "incoming"); code != 0 || !strings.Contains(errs, "Requeued: 1 message\n") {
		t.Errorf("-r incoming: %d %q", code, errs)
	}
	in = f.ids(t, queue.Incoming)
	if len(in) != 2 {
		t.Fatalf("after -r incoming: %v", f.where(t))
	}
	// By-ID deletes run before by-ID holds; totals come requeue, delete,
	// hold, release.
	code, errs = f.run(t, 0, "", "-h", in[1], "-d", in[0], "-r", c, "-h", in[0])
	want = fmt.Sprintf("postsuper: %s: removed\npostsuper: %s: requeued\npostsuper: %s: placed on hold\n"+
		"postsuper: Requeued: 1 message\npostsuper: Deleted: 1 message\npostsuper: Placed on hold: 1 message\n", in[0], c, in[1])
	if code != 0 || errs != want {
		t.Errorf("mixed: %d %q, want %q", code, errs, want)
	}
	// In the ALL pass each message gets the first operation that applies:
	// requeue wins over hold.
	code, errs = f.run(t, 0, "", "-h", "ALL", "-r", "ALL")
	if code != 0 || errs != "postsuper: Requeued: 2 messages\n" {
		t.Errorf("-h ALL -r ALL: %d %q", code, errs)
	}
	if got := f.where(t); len(got) != 2 || len(f.ids(t, queue.Incoming)) != 2 {
		t.Errorf("after -h ALL -r ALL: %v", got)
	}
	code, errs = f.run(t, 0, "", "-d", "ALL", "-d", b)
	if want := "postsuper: warning: option \"-d ALL\" will ignore other command line queue IDs\npostsuper: Deleted: 2 messages\n"; code != 0 || errs != want {
		t.Errorf("-d ALL -d ID: %d %q", code, errs)
	}
}

func (f *fixture) ids(t *testing.T, name string) []string {
	t.Helper()
	ids, err := f.q.List(name)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestBadArguments(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-d", "ALL", "nosuchqueue"}, "postsuper: fatal: invalid directory name: nosuchqueue\n"},
		{[]string{"-e", "ALL"}, "postsuper: fatal: -e: forced expiration is not supported by moat\n"},
		{[]string{"-x"}, usage},
		{[]string{"-c", "relative", "-d", "ALL"}, "postsuper: fatal: -c requires absolute pathname\n"},
	} {
		code, errs := f.run(t, 0, "", tc.args...)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: %d %q, want %q", tc.args, code, errs, tc.want)
		}
	}
}

func TestReadIDs(t *testing.T) {
	got, err := readIDs(strings.NewReader("A B\n\n\tC\r\nD"))
	if err != nil || fmt.Sprintf("%q", got) != `["A B" "" "\tC\r" "D"]` {
		t.Errorf("got %q %v", got, err)
	}
}
