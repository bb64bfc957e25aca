package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSimpleContentFilter is FILTER_README's "simple content filter": the
// smtp service sets -o content_filter=filter:dummy, the queue manager
// hands each message to the pipe(8) service "filter" running a script as
// an unprivileged account, and the script re-injects the message, marked,
// through sendmail (postdrop, pickup), where no content filter applies.
// The recipient gets it once, marked.
func TestSimpleContentFilter(t *testing.T) {
	e := newSubmitEnv(t, false)
	filterUser := newAccount(t)
	script := filepath.Join(e.dir, "filter.sh")
	body := "#!/bin/sh\n# add a header, then re-inject (FILTER_README)\n" +
		"{ printf 'X-Filtered: by the test filter\\n'; cat; } | " + e.sendmail + " -G -i \"$@\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	masterCF := fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd -o content_filter=filter:dummy\n", e.port) +
		"pickup unix n - y 60 1 pickup\n" +
		"filter unix - n n - 10 pipe flags=Rq user=" + filterUser.name +
		" null_sender= argv=" + script + " -f ${sender} -- ${recipient}\n"
	if err := os.WriteFile(filepath.Join(e.dir, "master.cf"), []byte(masterCF), 0o644); err != nil {
		t.Fatal(err)
	}
	e.start()
	t.Cleanup(e.stop)
	rcpt := e.rcpt[0].name
	out, err := runTool(t, 30*time.Second, "", "swaks", "--server", e.addr(),
		"--from", "sender@example.org", "--to", rcpt+"@mx.moat.test", "--header", "Subject: filter me")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	e.waitDelivered(rcpt, 1, 30*time.Second)
	e.waitLog(`postfix/pipe\[\d+\]: \w+: to=<`+rcpt+`@mx.moat.test>, relay=filter, .*status=sent \(delivered via filter service`, 10*time.Second)
	e.waitLog(`postfix/pickup\[\d+\]: \w+: uid=`+fmt.Sprint(filterUser.uid)+` from=<sender@example.org>`, 10*time.Second)
	files, _ := filepath.Glob(filepath.Join(e.maildir(rcpt), "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(files))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "X-Filtered: by the test filter\n") || !strings.Contains(string(b), "Subject: filter me") {
		t.Errorf("delivered message:\n%s", b)
	}
	time.Sleep(time.Second)
	if n := e.delivered(rcpt); n != 1 {
		t.Errorf("%d messages after a second, want 1 (a filter loop?)", n)
	}
}
