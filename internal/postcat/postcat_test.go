package postcat

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"moat/internal/cli"
	"moat/internal/queue"
	"moat/internal/queue/queuetest"
	"moat/internal/smtp"
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

const content = "Received: from client.example (client.example [192.0.2.9])\r\n" +
	"\tby mx.example.org\r\n" +
	"Subject: hello\r\n" +
	"\r\n" +
	"Body line 1\r\n" +
	"Not-a-header: in the body\r\n" +
	"last line without newline"

func (f *fixture) add(t *testing.T) string {
	t.Helper()
	w, err := f.q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString(content)
	w.Envelope = queue.Envelope{
		Sender:     "alice@example.com",
		Arrival:    time.Date(2026, 3, 7, 9, 5, 3, 0, time.UTC),
		ClientName: "client.example", ClientAddr: "192.0.2.9", Helo: "client.example",
		Protocol: "ESMTP", EnvID: "env1", Ret: "HDRS", MessageID: "<m1@example.com>",
		Flags: queue.FlagSMTPUTF8,
		Recipients: []queue.Recipient{
			{Address: "bob@example.net", ORCPT: "rfc822;bob@example.net", Notify: smtp.NotifyFailure | smtp.NotifyDelay},
			{Address: "carol@example.net"},
			{Address: "dave@example.net"},
		},
	}
	id, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.q.Move(id, queue.Incoming, queue.Deferred); err != nil {
		t.Fatal(err)
	}
	err = f.q.UpdateRecipients(queue.Deferred, id, []queue.RecipientUpdate{
		{Index: 1, State: queue.RcptDelivered},
		{Index: 2, State: queue.RcptDeferred, Reason: "connection timed out"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (f *fixture) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		if k == "MAIL_CONFIG" {
			return f.cfg
		}
		return ""
	}}
	code := run(env, "postcat", args, time.UTC)
	return code, out.String(), errb.String()
}

var envelope = "message_size: " + strconv.Itoa(len(content)) + "\n" + `message_arrival_time: Sat Mar  7 09:05:03 2026
named_attribute: client_name=client.example
named_attribute: client_address=192.0.2.9
named_attribute: helo_name=client.example
named_attribute: protocol_name=ESMTP
named_attribute: envelope_id=env1
named_attribute: dsn_ret=HDRS
named_attribute: message_id=<m1@example.com>
named_attribute: flags=smtputf8
sender: alice@example.com
dsn_orig_rcpt: rfc822;bob@example.net
dsn_notify: 12
recipient: bob@example.net
done_recipient: carol@example.net
recipient_status: delivered
recipient: dave@example.net
recipient_status: deferred: connection timed out
`

const header = "Received: from client.example (client.example [192.0.2.9])\n" +
	"\tby mx.example.org\n" +
	"Subject: hello\n"

const body = "\n" +
	"Body line 1\n" +
	"Not-a-header: in the body\n" +
	"last line without newline\n"

func TestPostcat(t *testing.T) {
	f := newFixture(t)
	id := f.add(t)
	p := "deferred/" + id
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-q", id}, "*** ENVELOPE RECORDS " + p + " ***\n" + envelope +
			"*** MESSAGE CONTENTS " + p + " ***\n" + header + body +
			"*** HEADER EXTRACTED " + p + " ***\n" +
			"*** MESSAGE FILE END " + p + " ***\n"},
		{[]string{"-ehbq", id}, "*** ENVELOPE RECORDS " + p + " ***\n" + envelope +
			"*** MESSAGE CONTENTS " + p + " ***\n" + header + body +
			"*** HEADER EXTRACTED " + p + " ***\n" +
			"*** MESSAGE FILE END " + p + " ***\n"},
		{[]string{"-hq", id}, header},
		{[]string{"-bq", id}, body},
		{[]string{"-eq", id}, envelope},
		{[]string{"-hbq", id}, header + body},
	} {
		code, out, errs := f.run(t, tc.args...)
		if code != 0 || errs != "" || out != tc.want {
			t.Errorf("%v: exit %d stderr %q\n%s\nwant:\n%s", tc.args, code, errs, out, tc.want)
		}
	}
	// A path to the queue file works too.
	matches, _ := filepath.Glob(filepath.Join(f.q.Dir(), "deferred", "*", id))
	if len(matches) != 1 {
		t.Fatalf("queue file not found: %v", matches)
	}
	if code, out, errs := f.run(t, "-h", matches[0]); code != 0 || out != header {
		t.Errorf("by path: %d %q %q", code, out, errs)
	}
}

func TestPostcatErrors(t *testing.T) {
	f := newFixture(t)
	missing := queue.MakeID(time.Now(), 99)
	stray := filepath.Join(t.TempDir(), missing)
	os.WriteFile(stray, []byte("x"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-q", missing}, "postcat: fatal: open queue file " + missing + ": No such file or directory\n"},
		{[]string{"-q", "bad"}, "postcat: fatal: open queue file bad: invalid queue ID\n"},
		{[]string{"-q"}, usage},
		{[]string{"-o", "-q", missing}, "not supported"},
		{[]string{"/etc/passwd"}, "not a moat queue file name"},
	} {
		code, _, errs := f.run(t, tc.args...)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: %d %q, want %q", tc.args, code, errs, tc.want)
		}
	}
	id := f.add(t)
	other := filepath.Join(t.TempDir(), id)
	os.WriteFile(other, []byte("x"), 0o600)
	if code, _, errs := f.run(t, other); code != 1 || !strings.Contains(errs, "not a file in the queue directory") {
		t.Errorf("look-alike file: %d %q", code, errs)
	}
}

func TestWriteContentPieces(t *testing.T) {
	long := strings.Repeat("a", 3*maxChunk) + "\r\n"
	in := "X-Long: " + long + "\r\n" + "Body: " + long
	var out bytes.Buffer
	if err := writeContent(&out, iotest.OneByteReader(strings.NewReader(in)), Sections{Header: true}); err != nil {
		t.Fatal(err)
	}
	if want := "X-Long: " + strings.Repeat("a", 3*maxChunk) + "\n"; out.String() != want {
		t.Errorf("header of %d bytes, want %d", out.Len(), len(want))
	}
	out.Reset()
	if err := writeContent(&out, strings.NewReader(in), Sections{Body: true}); err != nil {
		t.Fatal(err)
	}
	if want := "\nBody: " + strings.Repeat("a", 3*maxChunk) + "\n"; out.String() != want {
		t.Errorf("body of %d bytes, want %d", out.Len(), len(want))
	}
}
