package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// smugglingVariants are the end-of-data look-alikes published with the
// SMTP smuggling attacks (SEC Consult, December 2023; CVE-2023-51764):
// servers that honour one of them end the message early and run what
// follows as commands.
var smugglingVariants = map[string]string{
	"LF.LF":     "\n.\n",
	"LF.CRLF":   "\n.\r\n",
	"CR.CR":     "\r.\r",
	"CRLF.CR":   "\r\n.\r",
	"CRLF.LF":   "\r\n.\n",
	"LF.CR-LF":  "\n.\r",
	"CR.CRLF":   "\r.\r\n",
	"CRLF.CRLF": "", // control: the real terminator, which the next line supplies
}

// smuggle sends one message whose body hides a second transaction behind
// the separator sep, then the real end of data, and returns the reply to
// the end of data (or EOF) and the reply to a following QUIT.
func smuggle(t *testing.T, s *server, sep string) (endReply, quitReply string) {
	d := dial(t, s.addr())
	d.expect("220")
	d.cmd("EHLO client.example.org", "250")
	d.cmd("MAIL FROM:<sender@example.org>", "250")
	d.cmd("RCPT TO:<user@mx.moat.test>", "250")
	d.cmd("DATA", "354")
	hidden := "MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@mx.moat.test>\r\nDATA\r\n" +
		"Subject: smuggled\r\n\r\nevil\r\n"
	if sep == "" {
		// Control case: no smuggling separator, the hidden lines are
		// plain content.
		d.send("Subject: innocent\r\n\r\nhello\r\n" + hidden + ".\r\n")
	} else {
		d.send("Subject: innocent\r\n\r\nhello" + sep + hidden + ".\r\n")
	}
	endReply = strings.Join(d.reply(), "\n")
	d.send("QUIT\r\n")
	quitReply = strings.Join(d.reply(), "\n")
	return endReply, quitReply
}

// TestSmugglingRejected: with moat's default (smtpd_forbid_bare_newline =
// reject) every variant is refused with Postfix 3.9's reply, nothing is
// stored, and the hidden transaction never runs.
func TestSmugglingRejected(t *testing.T) {
	t.Parallel()
	s := startServer(t, "")
	for name, sep := range smugglingVariants {
		if sep == "" {
			continue
		}
		end, _ := smuggle(t, s, sep)
		if !strings.HasPrefix(end, "550 5.5.2 Error: bare <") {
			t.Errorf("%s: end of data answered %q, want 550 5.5.2 Error: bare <LF|CR> received", name, end)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := s.delivered("user"); n != 0 {
		t.Errorf("user got %d messages, want 0", n)
	}
	if n := s.delivered("victim"); n != 0 {
		t.Errorf("victim got %d messages: a smuggled transaction ran", n)
	}
	s.waitLog(`bare <(LF|CR)> received`, 5*time.Second)
}

// TestSmugglingNormalized: with smtpd_forbid_bare_newline = normalize
// (Postfix 3.9's default) each variant yields exactly one stored message,
// which holds the hidden commands as text; the victim gets nothing.
func TestSmugglingNormalized(t *testing.T) {
	t.Parallel()
	s := startServer(t, "smtpd_forbid_bare_newline = normalize\n")
	n := 0
	for name, sep := range smugglingVariants {
		end, quit := smuggle(t, s, sep)
		if !strings.HasPrefix(end, "250 ") {
			t.Errorf("%s: end of data answered %q, want 250", name, end)
			continue
		}
		if !strings.HasPrefix(quit, "221 ") {
			t.Errorf("%s: QUIT answered %q: the hidden commands were run", name, quit)
		}
		n++
	}
	s.waitDelivered("user", n, 20*time.Second)
	time.Sleep(300 * time.Millisecond)
	if v := s.delivered("victim"); v != 0 {
		t.Errorf("victim got %d messages: a smuggled transaction ran", v)
	}
	files, _ := filepath.Glob(filepath.Join(s.maildir("user"), "new", "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "MAIL FROM:<evil@example.org>") {
			t.Errorf("%s lacks the hidden commands as content:\n%s", f, b)
		}
	}
}
