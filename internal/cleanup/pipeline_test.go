package cleanup

import (
	"bufio"
	"io"
	"strings"
	"testing"
	"time"

	"moat/internal/queue"
	"moat/internal/smtp"
)

// TestPipeline puts the filter where the SMTP server will: between the
// DATA reader and the queue writer, and reads the queued message back.
func TestPipeline(t *testing.T) {
	q, err := queue.Open(t.TempDir(), queue.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	rcv := FormatReceived(ReceivedInfo{Helo: "c.example", ClientName: "c.example", ClientAddr: "192.0.2.7",
		MyHostname: "mx.example", MailName: "moat", Protocol: "ESMTP", QueueID: w.ID(),
		Recipients: []string{"u@example"}, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	f := New(w, Options{QueueID: w.ID(), Received: rcv, Checks: hdrChecks(t, "/^X-Secret:/ IGNORE\n")})
	data := "Subject: hi\r\nX-Secret: 1\r\n\r\n..dot\r\nbody\r\n.\r\n"
	if _, err := smtp.ReadData(bufio.NewReader(strings.NewReader(data)), f, smtp.DataOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if r := f.Result(); r.Reject != "" || r.Discard {
		t.Fatalf("result %+v", r)
	}
	w.Envelope = queue.Envelope{Sender: "s@example", Recipients: []queue.Recipient{{Address: "u@example"}}}
	id, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	m, err := q.Open("incoming", id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got, err := io.ReadAll(m.Content())
	if err != nil {
		t.Fatal(err)
	}
	want := strings.ReplaceAll(rcv, "\n", "\r\n") + "\r\nSubject: hi\r\n\r\n.dot\r\nbody\r\n"
	if string(got) != want {
		t.Errorf("queued\n%q\nwant\n%q", got, want)
	}
}
