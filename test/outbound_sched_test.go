package test

import (
	"bufio"
	"context"
	"fmt"
	"net/textproto"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/internal/delivery/smtp/smtpsink"
	"moat/internal/testutil"
	"moat/internal/testutil/dnsserver"
)

// sourceTo runs Postfix's smtp-source (tool): n messages from one sender
// to rcpt over sessions parallel sessions, and returns an error unless
// every one was acknowledged. It may run on another goroutine than the
// test's.
func sourceTo(tool string, s *server, n, sessions int, rcpt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, "-v", "-s", strconv.Itoa(sessions), "-m", strconv.Itoa(n),
		"-f", "load@moat.test", "-t", rcpt, s.addr()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("smtp-source: %v\n%s", err, out)
	}
	if got := len(queuedAs.FindAllString(string(out), -1)); got != n {
		return fmt.Errorf("smtp-source: %d of %d acknowledged\n%s", got, n, out)
	}
	return nil
}

// TestOutboundDeadDestinationDoesNotSlowOthers: issue 8's "a destination
// that keeps failing does not slow the others". One destination refuses
// every connection; after the failed-cohort limit the queue manager
// declares it dead and defers its other mail at once with Postfix's
// "delivery temporarily suspended: REASON", while 50 messages to a live
// destination (Postfix's smtp-sink) in the same run are all delivered.
func TestOutboundDeadDestinationDoesNotSlowOthers(t *testing.T) {
	t.Parallel()
	port := smtpsink.FreePort(t, "127.0.0.41", "127.0.0.42")
	sink := smtpsink.Start(t, "127.0.0.41", port)
	ns := dnsserver.Start(t, "live.test. IN A 127.0.0.41", "dead.test. IN A 127.0.0.42")
	s := startServer(t, "mynetworks = 127.0.0.0/8\ndns_servers = "+ns.Addr()+"\nsmtp_tcp_port = "+port+"\n"+
		"minimal_backoff_time = 1h\nmaximal_backoff_time = 2h\n")
	tool := testutil.Tool(t, "smtp-source")
	deadErr := make(chan error, 1)
	go func() { deadErr <- sourceTo(tool, s, 20, 5, "u@dead.test") }()
	if err := sourceTo(tool, s, 50, 10, "u@live.test"); err != nil {
		t.Fatal(err)
	}
	if err := <-deadErr; err != nil {
		t.Fatal(err)
	}
	s.waitLogCount(`postfix/smtp\[\d+\]: \w+: to=<u@live\.test>, relay=live\.test\[127\.0\.0\.41\]:`+port+`, .*status=sent`, 50, 2*time.Minute)
	dead := `\w+: to=<u@dead\.test>, relay=none, .*status=deferred \(`
	s.waitLogCount(`postfix/(smtp|qmgr)\[\d+\]: `+dead, 20, time.Minute)
	refused := regexp.QuoteMeta("connect to dead.test[127.0.0.42]:" + port + ": Connection refused")
	s.waitLog(`postfix/qmgr\[\d+\]: `+dead+`delivery temporarily suspended: `+refused+`\)`, 10*time.Second)
	tried := len(regexp.MustCompile(`postfix/smtp\[\d+\]: `+dead+refused+`\)`).FindAllString(s.log(), -1))
	t.Logf("the dead destination was tried %d times for 20 messages", tried)
	if tried == 0 || tried >= 20 {
		t.Errorf("the dead destination was tried %d times for 20 messages; want a few, then suspended\n%s", tried, s.log())
	}
	if got := len(sink.Messages()); got != 50 {
		t.Errorf("smtp-sink got %d messages, want 50", got)
	}
}

// TestOutboundDelayWarningOnce: a message a remote server keeps
// deferring (smtp-sink answers RCPT with 4xx) outlives
// delay_warning_time; the local sender gets one RFC 3464 "delayed"
// report, and neither later retries nor a restart of moat send a second.
func TestOutboundDelayWarningOnce(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	port := smtpsink.FreePort(t, "127.0.0.43")
	smtpsink.Start(t, "127.0.0.43", port, "-r", "RCPT")
	ns := dnsserver.Start(t, "slow.test. IN A 127.0.0.43")
	s := startServer(t, "mynetworks = 127.0.0.0/8\ndns_servers = "+ns.Addr()+"\nsmtp_tcp_port = "+port+"\n"+
		"delay_warning_time = 1s\nqueue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 1s\n")
	id := sendVia(t, s, "user@moat.test", "someone@slow.test", "wait for it")
	deferred := `postfix/smtp\[\d+\]: ` + id + `: to=<someone@slow\.test>, .*status=deferred`
	s.waitLog(`postfix/bounce\[\d+\]: `+id+`: sender delay notification: \w+`, time.Minute)
	s.waitDelivered("user", 1, 30*time.Second)
	msg := onlyNotice(t, s, "user")
	if got := msg.Header.Get("Subject"); got != "Delayed Mail (still being retried)" {
		t.Errorf("Subject %q", got)
	}
	types, bodies := reportParts(t, msg)
	if len(types) != 3 || types[1] != "message/delivery-status" || types[2] != "text/rfc822-headers" {
		t.Fatalf("parts %q", types)
	}
	blocks := strings.Split(strings.ReplaceAll(strings.TrimSpace(bodies[1]), "\r\n", "\n"), "\n\n")
	if len(blocks) != 2 {
		t.Fatalf("delivery-status blocks %q", blocks)
	}
	rcpt, err := textproto.NewReader(bufio.NewReader(strings.NewReader(blocks[1] + "\n\n"))).ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	if rcpt.Get("Action") != "delayed" || !strings.HasPrefix(rcpt.Get("Status"), "4.") ||
		rcpt.Get("Final-Recipient") != "rfc822; someone@slow.test" || rcpt.Get("Will-Retry-Until") == "" {
		t.Errorf("per-recipient fields %v", rcpt)
	}
	// More retries, a restart, and more retries: still one warning.
	n := len(regexp.MustCompile(deferred).FindAllString(s.log(), -1))
	s.waitLogCount(deferred, n+2, time.Minute)
	s.stop()
	s.start()
	s.waitLogCount(deferred, n+4, time.Minute)
	if w := len(regexp.MustCompile(`sender delay notification`).FindAllString(s.log(), -1)); w != 1 || s.delivered("user") != 1 {
		t.Errorf("%d delay notifications logged, %d in the Maildir; want one", w, s.delivered("user"))
	}
}
