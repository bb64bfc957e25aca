package maillog_test

import (
	"context"
	"net/netip"
	"os"
	"time"

	"moat/internal/maillog"
)

// How smtpd logs a session: one Logger per process, a child per daemon,
// and the shared texts for every record tools parse.
func Example() {
	now := func() time.Time { return time.Date(2026, 7, 3, 11, 0, 40, 0, time.UTC) }
	root := maillog.New(maillog.Options{Sink: maillog.NewWriterSink(os.Stdout, "ns1"), Daemon: "master", PID: 1, Now: now})
	smtpd := root.With("smtpd", 4516)

	c := maillog.Client{Name: "proxy.aaa.jp", Addr: netip.MustParseAddr("210.0.228.30")}
	var cmds maillog.Commands
	smtpd.Info("%s", maillog.Connect(c))
	cmds.Count("EHLO", true)
	cmds.Count("MAIL", true)
	cmds.Count("RCPT", false)
	smtpd.Info("%s", maillog.Reject("", "RCPT", c, "554 5.7.1 <kororo@kororo.jp>: Relay access denied",
		maillog.Envelope{Sender: "info@aaa.jp", HasSender: true, Recipient: "kororo@kororo.jp", HasRecipient: true,
			Proto: "ESMTP", Helo: "alor.aaa.jp"}))
	smtpd.Info("%s", maillog.After(maillog.LostConnection, "RCPT", c))
	smtpd.Info("%s", maillog.Disconnect(c, &cmds))
	_ = root.Close(context.Background())
	// Output:
	// Jul 03 11:00:40 ns1 postfix/smtpd[4516]: connect from proxy.aaa.jp[210.0.228.30]
	// Jul 03 11:00:40 ns1 postfix/smtpd[4516]: NOQUEUE: reject: RCPT from proxy.aaa.jp[210.0.228.30]: 554 5.7.1 <kororo@kororo.jp>: Relay access denied; from=<info@aaa.jp> to=<kororo@kororo.jp> proto=ESMTP helo=<alor.aaa.jp>
	// Jul 03 11:00:40 ns1 postfix/smtpd[4516]: lost connection after RCPT from proxy.aaa.jp[210.0.228.30]
	// Jul 03 11:00:40 ns1 postfix/smtpd[4516]: disconnect from proxy.aaa.jp[210.0.228.30] ehlo=1 mail=1 rcpt=0/1 commands=2/3
}
