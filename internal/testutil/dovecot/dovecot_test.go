package dovecot

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// The harness's own check: a real LMTP session on each listener delivers
// to a known user, refuses an unknown one, and the message is in the
// user's Maildir.
func TestStartDeliver(t *testing.T) {
	s := Start(t, Options{Users: map[string]string{"alice@example.com": "pw"}})
	for i, network := range []string{"unix", "tcp"} {
		addr := s.LMTPSocket
		if network == "tcp" {
			addr = s.LMTPAddr
		}
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		expect := func(prefix string) {
			t.Helper()
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("%s: read: %v", network, err)
				}
				if !strings.HasPrefix(line, prefix) {
					t.Fatalf("%s: got %q, want %s", network, line, prefix)
				}
				if len(line) < 4 || line[3] != '-' {
					return
				}
			}
		}
		send := func(s string) {
			if _, err := c.Write([]byte(s + "\r\n")); err != nil {
				t.Fatal(err)
			}
		}
		expect("220")
		send("LHLO test")
		expect("250")
		send("MAIL FROM:<sender@example.org>")
		expect("250")
		send("RCPT TO:<alice@example.com>")
		expect("250")
		send("RCPT TO:<nobody@example.com>")
		expect("550 5.1.1")
		send("DATA")
		expect("354")
		send("Subject: harness\r\n\r\nbody " + network + "\r\n.")
		expect("250 2.0.0 <alice@example.com>")
		send("QUIT")
		expect("221")
		c.Close()
		msgs, err := s.Messages("alice@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != i+1 {
			t.Fatalf("%d messages after %s, want %d", len(msgs), network, i+1)
		}
	}
	msgs, _ := s.Messages("alice@example.com")
	bodies := string(Body(msgs[0])) + string(Body(msgs[1]))
	if !strings.Contains(bodies, "Subject: harness\n\nbody unix\n") || !strings.Contains(bodies, "body tcp\n") {
		t.Errorf("bodies %q", bodies)
	}
}

func TestBody(t *testing.T) {
	in := "Return-Path: <a@b>\nDelivered-To: c@d\nReceived: from x\n\tby vm\nReceived: own\nSubject: s\n\nhi\n"
	if got := string(Body([]byte(in))); got != "Received: own\nSubject: s\n\nhi\n" {
		t.Errorf("Body = %q", got)
	}
}

// The auth socket speaks Dovecot's authentication protocol (what
// smtpd_sasl_type = dovecot uses): PLAIN with the right password is
// accepted, with a wrong one refused.
func TestAuthSocket(t *testing.T) {
	s := Start(t, Options{Users: map[string]string{"alice@example.com": "s3cret"}})
	c, err := net.DialTimeout("unix", s.AuthSocket, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	fmt.Fprintf(c, "VERSION\t1\t2\nCPID\t%d\n", os.Getpid())
	mechs := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "MECH\t") {
			mechs += line
		}
		if line == "DONE\n" {
			break
		}
	}
	if !strings.Contains(mechs, "MECH\tPLAIN") {
		t.Fatalf("mechanisms %q", mechs)
	}
	for i, tc := range []struct{ pass, want string }{{"s3cret", "OK\t1\tuser=alice@example.com"}, {"wrong", "FAIL\t2"}} {
		resp := base64.StdEncoding.EncodeToString([]byte("\x00alice@example.com\x00" + tc.pass))
		fmt.Fprintf(c, "AUTH\t%d\tPLAIN\tservice=smtp\tnologin\tresp=%s\n", i+1, resp)
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(line, tc.want) {
			t.Errorf("password %q: %q, want %s...", tc.pass, line, tc.want)
		}
	}
}

// The LMTP socket can be placed elsewhere, as in a Postfix queue's
// private/ directory.
func TestLMTPSocketPath(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/dovecot-lmtp"
	s := Start(t, Options{LMTPSocket: path})
	if s.LMTPSocket != path {
		t.Fatalf("LMTPSocket %q", s.LMTPSocket)
	}
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
