package smtp_test

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"moat/internal/smtp"
)

// Example shows how smtpd drives the package: read a command, tokenize,
// parse, and stream DATA into the queue file, replying with what errors
// carry.
func Example() {
	in := "MAIL FROM:<a@example.org> SIZE=20\r\n" +
		"RCPT TO:<b@example.net> NOTIFY=FAILURE\r\n" +
		"DATA\r\n" +
		"Subject: hi\r\n\r\n..dot\n.\nMAIL FROM:<evil@example.com>\r\n.\r\n" +
		"QUIT\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	opts := smtp.Options{DSN: true, SMTPUTF8: true, SizeLimit: 10240000}
	for {
		line, err := smtp.ReadCommand(r, 2048, smtp.BareNewlineReject, 0)
		if err != nil {
			fmt.Println("read:", err)
			return
		}
		toks := smtp.Tokenize(line)
		switch strings.ToUpper(toks[0].Value) {
		case "MAIL":
			m, err := smtp.ParseMail(toks, opts)
			fmt.Println(m.From.Addr, m.Size, err)
		case "RCPT":
			rc, err := smtp.ParseRcpt(toks, opts)
			fmt.Println(rc.To.Addr, rc.Notify, err)
		case "DATA":
			var queueFile bytes.Buffer
			_, err := smtp.ReadData(r, &queueFile, smtp.DataOptions{BareNewline: smtp.BareNewlineReject})
			if rep, ok := smtp.ReplyOf(err); ok {
				fmt.Println(rep)
			}
		case "QUIT":
			fmt.Println(smtp.NewReply(221, "2.0.0", "Bye"))
			return
		}
	}
	// Output:
	// a@example.org 20 <nil>
	// b@example.net FAILURE <nil>
	// 550 5.5.2 Error: bare <LF> received
	// 221 2.0.0 Bye
}
