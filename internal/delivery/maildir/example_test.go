package maildir_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"moat/internal/delivery"
	"moat/internal/delivery/maildir"
)

// A delivery as local(8) makes it for home_mailbox = Maildir/, and how the
// queue manager reads a failure.
func ExampleDeliver() {
	home, _ := os.MkdirTemp("", "home")
	defer os.RemoveAll(home)
	box := filepath.Join(home, "Maildir")
	msg := strings.NewReader("Subject: hi\r\n\r\nhello\r\n")
	_, err := maildir.Deliver(box, msg, maildir.Options{
		ReturnPath: true, Sender: "alice@example.org",
		Recipient: "bob@example.com", SizeLimit: 51200000,
	})
	n, _ := maildir.Count(box)
	fmt.Println(err, n)

	_, err = maildir.Deliver(box, strings.NewReader("big\r\n"), maildir.Options{SizeLimit: 2})
	var e *delivery.Error
	if errors.As(err, &e) {
		fmt.Printf("dsn=%s, status=%s (%s)\n", e.DSN, e.Status(), e.Text)
	}
	// Output:
	// <nil> 1
	// dsn=5.2.2, status=bounced (maildir delivery failed: error writing message: File too large)
}
