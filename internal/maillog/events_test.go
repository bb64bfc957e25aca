package maillog

import (
	"net/netip"
	"strings"
	"testing"
)

func client(name, addr string) Client {
	return Client{Name: name, Addr: netip.MustParseAddr(addr), Port: 52814}
}

func TestClientString(t *testing.T) {
	for _, tc := range []struct {
		c    Client
		want string
	}{
		{client("proxy.aaa.jp", "210.0.228.30"), "proxy.aaa.jp[210.0.228.30]"},
		{client("", "192.0.2.1"), "unknown[192.0.2.1]"},
		{client("mx.example", "2001:DB8:0:0::1"), "mx.example[2001:db8::1]"},
		{client("", "::ffff:192.0.2.7"), "unknown[192.0.2.7]"},
		{client("", "fe80::1%eth0"), "unknown[fe80::1%eth0]"},
		{client("", "::1"), "unknown[::1]"},
		{Client{Name: "x", Addr: netip.MustParseAddr("192.0.2.1"), Port: 25, LogPort: true}, "x[192.0.2.1]:25"},
		{Client{Name: "x", Addr: netip.MustParseAddr("2001:db8::2"), Port: 587, LogPort: true}, "x[2001:db8::2]:587"},
		{Client{}, "unknown[unknown]"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestSessionTexts(t *testing.T) {
	c := client("mail.example.org", "192.0.2.25")
	for _, tc := range []struct{ got, want string }{
		{Connect(c), "connect from mail.example.org[192.0.2.25]"},
		{After(LostConnection, "RCPT", c), "lost connection after RCPT from mail.example.org[192.0.2.25]"},
		{After(LostConnection, StateConnect, c), "lost connection after CONNECT from mail.example.org[192.0.2.25]"},
		{After(Timeout, StateEndOfMessage, c), "timeout after END-OF-MESSAGE from mail.example.org[192.0.2.25]"},
		{After(TooManyErrors, StateUnknown, c), "too many errors after UNKNOWN from mail.example.org[192.0.2.25]"},
		{AfterBytes(Timeout, "DATA", 1234, c), "timeout after DATA (1234 bytes) from mail.example.org[192.0.2.25]"},
		{AfterBytes(LostConnection, "BDAT", 0, c), "lost connection after BDAT (0 bytes) from mail.example.org[192.0.2.25]"},
		{ClientLine("56FE42EB09", c, ClientInfo{}), "56FE42EB09: client=mail.example.org[192.0.2.25]"},
		{ClientLine("4Nx3Fz1QZKz9vD5", c, ClientInfo{SASLMethod: "PLAIN", SASLUsername: "alice@example.org"}),
			"4Nx3Fz1QZKz9vD5: client=mail.example.org[192.0.2.25], sasl_method=PLAIN, sasl_username=alice@example.org"},
		{ClientLine("A1", c, ClientInfo{OrigQueueID: "B2", OrigClient: "x[192.0.2.9]"}),
			"A1: client=mail.example.org[192.0.2.25], orig_queue_id=B2, orig_client=x[192.0.2.9]"},
		{MessageID("56FE42EB09", "<20260703110040.1@example.org>"), "56FE42EB09: message-id=<20260703110040.1@example.org>"},
		{MessageID("56FE42EB09", ""), "56FE42EB09: message-id=<>"},
		{QueueActive("56FE42EB09", "info@aaa.jp", 2047, 1), "56FE42EB09: from=<info@aaa.jp>, size=2047, nrcpt=1 (queue active)"},
		{QueueActive("56FE42EB09", "", 512, 3), "56FE42EB09: from=<>, size=512, nrcpt=3 (queue active)"},
		{Removed("56FE42EB09"), "56FE42EB09: removed"},
		// The telnet negotiation bytes from a real Postfix log line.
		{ImproperPipelining(StateConnect, client("", "192.168.2.76"), []byte("\377\373\037\377\373 \377\373\030\377\373'\377\375\001\377\373\003\377\375\003")),
			`improper command pipelining after CONNECT from unknown[192.168.2.76]: \377\373\037\377\373 \377\373\030\377\373'\377\375\001\377\373\003\377\375\003`},
		{ImproperPipelining("EHLO", c, []byte("MAIL FROM:<a@b>\r\nRCPT TO:<c\\d>\r\n\t")),
			`improper command pipelining after EHLO from mail.example.org[192.0.2.25]: MAIL FROM:<a@b>\r\nRCPT TO:<c\\d>\r\n\t`},
		{ImproperPipelining("HELO", c, []byte(strings.Repeat("x", 150))),
			"improper command pipelining after HELO from mail.example.org[192.0.2.25]: " + strings.Repeat("x", MaxPipelined)},
		{SASLAuthFailed(client("", "192.0.2.66"), "LOGIN", "UGFzc3dvcmQ6"),
			"unknown[192.0.2.66]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"},
	} {
		if tc.got != tc.want {
			t.Errorf("got  %q\nwant %q", tc.got, tc.want)
		}
	}
}

func TestWhatsup(t *testing.T) {
	seed := client("proxy.aaa.jp", "210.0.228.30")
	env := Envelope{Sender: "info@aaa.jp", HasSender: true, Recipient: "kororo@kororo.jp", HasRecipient: true,
		Proto: "ESMTP", Helo: "alor.aaa.jp"}
	for _, tc := range []struct{ got, want string }{
		// The seed's line (SEEDS.md), queue ID and all.
		{Reject("56FE42EB09", "RCPT", seed, "450 <alor.aaa.jp>: Helo command rejected: Host not found", env),
			"56FE42EB09: reject: RCPT from proxy.aaa.jp[210.0.228.30]: 450 <alor.aaa.jp>: Helo command rejected: Host not found; from=<info@aaa.jp> to=<kororo@kororo.jp> proto=ESMTP helo=<alor.aaa.jp>"},
		{Reject("", "RCPT", client("", "192.0.2.1"), "554 5.7.1 <u@example.com>: Relay access denied",
			Envelope{HasSender: true, Recipient: "u@example.com", HasRecipient: true, Proto: "ESMTP", Helo: "x"}),
			"NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <u@example.com>: Relay access denied; from=<> to=<u@example.com> proto=ESMTP helo=<x>"},
		{Reject("", StateConnect, client("", "192.0.2.1"), "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.example",
			Envelope{Proto: "SMTP"}),
			"NOQUEUE: reject: CONNECT from unknown[192.0.2.1]: 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.example; proto=SMTP"},
		{Whatsup("", "hold", "MAIL", seed, "<info@aaa.jp>: Sender address triggers HOLD action",
			Envelope{Sender: "info@aaa.jp", HasSender: true, Proto: "SMTP", Helo: "alor"}),
			"NOQUEUE: hold: MAIL from proxy.aaa.jp[210.0.228.30]: <info@aaa.jp>: Sender address triggers HOLD action; from=<info@aaa.jp> proto=SMTP helo=<alor>"},
		{ContentAction("4Nx3Fz1QZKz9vD5", "reject", "header", "Subject: win big", "x[192.0.2.1]", env, "5.7.1 no spam"),
			"4Nx3Fz1QZKz9vD5: reject: header Subject: win big from x[192.0.2.1]; from=<info@aaa.jp> to=<kororo@kororo.jp> proto=ESMTP helo=<alor.aaa.jp>: 5.7.1 no spam"},
		{ContentAction("A1", "hold", "body", strings.Repeat("b", 250), "", Envelope{HasSender: true}, ""),
			"A1: hold: body " + strings.Repeat("b", MaxContentShown) + " from unknown; from=<>"},
	} {
		if tc.got != tc.want {
			t.Errorf("got  %q\nwant %q", tc.got, tc.want)
		}
	}
}

func TestCommands(t *testing.T) {
	type cmd struct {
		verb string
		ok   bool
	}
	for _, tc := range []struct {
		cmds []cmd
		want string
	}{
		{nil, " commands=0/0"},
		{[]cmd{{"EHLO", true}, {"MAIL", true}, {"RCPT", true}, {"DATA", true}, {"QUIT", true}},
			" ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"},
		{[]cmd{{"HELO", true}, {"MAIL", true}, {"RCPT", false}},
			" helo=1 mail=1 rcpt=0/1 commands=2/3"},
		// Counters come in Postfix's table order, not arrival order.
		{[]cmd{{"quit", true}, {"AUTH", false}, {"ehlo", true}, {"STARTTLS", true}, {"ehlo", true}, {"AUTH", false}},
			" ehlo=2 starttls=1 auth=0/2 quit=1 commands=4/6"},
		{[]cmd{{"GET", false}, {"Host:", false}},
			" unknown=0/2 commands=0/2"},
		{[]cmd{{"EHLO", true}, {"BDAT", true}, {"RSET", true}, {"NOOP", true}, {"VRFY", false}, {"ETRN", false}, {"XCLIENT", true}, {"XFORWARD", true}},
			" ehlo=1 xclient=1 xforward=1 bdat=1 rset=1 noop=1 vrfy=0/1 etrn=0/1 commands=6/8"},
	} {
		var s Commands
		for _, c := range tc.cmds {
			s.Count(c.verb, c.ok)
		}
		if got := s.String(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	var s Commands
	s.Count("EHLO", true)
	s.Count("QUIT", true)
	if got, want := Disconnect(client("", "2001:db8::5"), &s), "disconnect from unknown[2001:db8::5] ehlo=1 quit=1 commands=2"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
