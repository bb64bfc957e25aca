package smtp

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReplyFormat(t *testing.T) {
	cases := []struct {
		r    Reply
		want string
	}{
		{NewReply(250, "2.0.0", "Ok"), "250 2.0.0 Ok\r\n"},
		{NewReply(220, "", "mx ESMTP"), "220 mx ESMTP\r\n"},
		{Reply{Code: 250, Lines: []string{"mx", "PIPELINING", "SIZE 10240000"}}, "250-mx\r\n250-PIPELINING\r\n250 SIZE 10240000\r\n"},
		{Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"a", "b"}}, "550-5.1.1 a\r\n550 5.1.1 b\r\n"},
		{Reply{Code: 421}, "421 \r\n"},
	}
	for _, c := range cases {
		if got := c.r.Format(); got != c.want {
			t.Errorf("Format(%+v) = %q, want %q", c.r, got, c.want)
		}
		var b strings.Builder
		if _, err := c.r.WriteTo(&b); err != nil || b.String() != c.want {
			t.Errorf("WriteTo = %q, %v", b.String(), err)
		}
	}
	if s := NewReply(550, "5.1.1", "x").Error(); s != "550 5.1.1 x" {
		t.Errorf("Error() = %q", s)
	}
}

func TestReadReply(t *testing.T) {
	cases := []struct {
		in   string
		want Reply
	}{
		{"250 2.0.0 Ok\r\n", NewReply(250, "2.0.0", "Ok")},
		{"250-mx\r\n250-8BITMIME\r\n250 DSN\r\n", Reply{Code: 250, Lines: []string{"mx", "8BITMIME", "DSN"}}},
		{"550-5.1.1 a\r\n550 5.1.1 b\n", Reply{Code: 550, Enhanced: "5.1.1", Lines: []string{"a", "b"}}},
		{"550-5.1.1 a\r\n550 b\r\n", Reply{Code: 550, Lines: []string{"5.1.1 a", "b"}}},
		{"250 5.0.0 odd\r\n", Reply{Code: 250, Lines: []string{"5.0.0 odd"}}},
		{"354\r\n", Reply{Code: 354, Lines: []string{""}}},
		{"451 4.3.0\r\n", Reply{Code: 451, Enhanced: "4.3.0", Lines: []string{""}}},
	}
	for _, c := range cases {
		got, err := ReadReply(bufio.NewReader(strings.NewReader(c.in)), 0)
		if err != nil {
			t.Errorf("ReadReply(%q): %v", c.in, err)
			continue
		}
		if got.Format() != c.want.Format() || got.Enhanced != c.want.Enhanced {
			t.Errorf("ReadReply(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"25 ok\r\n", "250-a\r\n251 b\r\n", "250xok\r\n", "650 no\r\n", "abc\r\n"} {
		if _, err := ReadReply(bufio.NewReader(strings.NewReader(bad)), 0); !errors.Is(err, ErrBadReply) {
			t.Errorf("ReadReply(%q) err = %v, want ErrBadReply", bad, err)
		}
	}
	if _, err := ReadReply(bufio.NewReader(strings.NewReader("250-a\r\n")), 0); !errors.Is(err, io.EOF) {
		t.Errorf("truncated reply err = %v", err)
	}
	if _, err := ReadReply(bufio.NewReader(strings.NewReader("250 "+strings.Repeat("x", 100)+"\r\n")), 50); !errors.Is(err, ErrBadReply) {
		t.Errorf("long reply err = %v", err)
	}
}

// TestReplyTexts pins every reply text the package produces to Postfix's
// wording (moat's own where noted in the doc comments).
func TestReplyTexts(t *testing.T) {
	cases := []struct {
		r    Reply
		want string
	}{
		{BareNewlineReply(0, false), "550 5.5.2 Error: bare <LF> received"},
		{BareNewlineReply(521, false), "521 5.5.2 Error: bare <LF> received"},
		{BareNewlineReply(0, true), "550 5.5.2 Error: bare <CR> received"},
		{LineTooLongReply(), "500 5.5.2 Error: line too long"},
		{TooBigReply(), "552 5.3.4 Message size exceeds fixed limit"},
		{mailSyntaxReply, "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{rcptSyntaxReply, "501 5.5.4 Syntax: RCPT TO:<address>"},
		{badSenderReply, "501 5.1.7 Bad sender address syntax"},
		{badRcptReply, "501 5.1.3 Bad recipient address syntax"},
		{bdatSyntaxReply, "501 5.5.4 Syntax: BDAT count [LAST]"},
		{UnicodeAddressReply(), "553 5.6.7 Must declare SMTPUTF8 to send unicode address"},
	}
	for _, c := range cases {
		if got := c.r.String(); got != c.want {
			t.Errorf("reply %q, want %q", got, c.want)
		}
	}
}

func TestReplyControlCharacters(t *testing.T) {
	r := NewReply(555, "5.5.4", "Unsupported option: X=\"a\r\n250 2.0.0 Ok\x00\"")
	if got := r.Format(); got != "555 5.5.4 Unsupported option: X=\"a??250 2.0.0 Ok?\"\r\n" {
		t.Errorf("Format = %q", got)
	}
}
