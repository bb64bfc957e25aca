package qmgr

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/maillog"
	"moat/internal/testutil"
)

// pflogsumm (Debian's package) counts the queue manager's and agents'
// records as it counts Postfix's: deliveries, deferrals and bounces per
// recipient, and the recipient domains.
func TestPflogsumm(t *testing.T) {
	bin := testutil.Tool(t, "pflogsumm")
	e := newEnv(t, "default_transport = discard\nrecipient_delimiter = +\n")
	path := filepath.Join(t.TempDir(), "maillog")
	sink, err := maillog.OpenFile(path, "mx")
	if err != nil {
		t.Fatal(err)
	}
	log := maillog.New(maillog.Options{Sink: sink, SyslogName: "postfix", Daemon: "qmgr", PID: 700})
	m, err := New(Deps{Config: e.cfg, Log: log, Queue: e.fix.Queue, Agents: e.agents})
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	ids := []string{
		e.put("a@example.org", "kim@mx.test", "lee+x@mx.test"),
		e.put("b@example.org", "x@remote.example"),
		e.put("", "../bad@mx.test"),
	}
	e.start()
	e.waitFor("all done", 5*time.Second, func() bool {
		for _, id := range ids {
			if !e.gone(id) {
				return false
			}
		}
		return true
	})
	e.stop()
	if err := log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, path).CombinedOutput()
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	report := string(out)
	for _, want := range []string{
		"      3   delivered\n",
		"      1   bounced\n",
		"    180   bytes delivered\n",
		"      3   recipients\n",
		"  local (total: 1)\n         1   unknown user: \"../bad\"\n",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("pflogsumm report lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^ +2 +120 +0 .* mx\.test$`).MatchString(report) {
		t.Error("pflogsumm's delivery summary lacks two messages to mx.test")
	}
	if t.Failed() {
		b, _ := os.ReadFile(path)
		t.Logf("log:\n%s\nreport:\n%s", b, report)
	}
}
