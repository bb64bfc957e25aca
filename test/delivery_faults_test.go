package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The failure half of issue 5's end-to-end delivery tests: a pipe(8)
// service that defers, an unwritable Maildir, and crashes mid-delivery.

// stockMaildropRow returns the maildrop row of Debian's stock master.cf
// (the copy in testdata is the same text, for hosts without Postfix).
func stockMaildropRow(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		b, err = os.ReadFile("testdata/delivery/maildrop.row")
		if err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "maildrop ") {
			row := l + "\n"
			for _, c := range lines[i+1:] {
				if !strings.HasPrefix(c, " ") && !strings.HasPrefix(c, "\t") {
					break
				}
				row += c + "\n"
			}
			return row
		}
	}
	t.Fatal("no maildrop row in the stock master.cf")
	return ""
}

// postqueue runs moat's postqueue on the server's configuration.
func postqueue(t *testing.T, s *server, args ...string) string {
	t.Helper()
	o, err := exec.Command(moatBin, append([]string{"postqueue", "-c", s.dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("moat postqueue %v: %v\n%s", args, err, o)
	}
	return string(o)
}

// flush runs `moat postqueue -f` as the admin does (root) and waits up to
// 5s for the log to match re, failing the test if it does not: the request
// must reach the queue manager, which runs as mail_owner.
func flush(t *testing.T, s *server, re string) {
	t.Helper()
	postqueue(t, s, "-f")
	rx := regexp.MustCompile(re)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if rx.MatchString(s.log()) {
			return
		}
	}
	t.Errorf("postqueue -f: no log line matching %q within 5s", re)
}

// TestDeliverPipeStockMaildrop is pipe(8) with the maildrop row of
// Debian's master.cf, its user= and argv path swapped for a throw-away
// account and a recording script: transport_maps routes a domain to
// "maildrop:", the script gets "-d ${recipient}" and the message with
// the D, R and X flags' headers, runs as the account; exit 75 (EX_TEMPFAIL)
// defers, mailq shows the reason, and after the script is fixed
// `postqueue -f` delivers it exactly once.
func TestDeliverPipeStockMaildrop(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	acct := homedAccount(t)
	base := baseDir(t)
	out := filepath.Join(base, "out")
	mkdirOwned(t, out, 0o755, acct.uid, acct.gid)
	fail := filepath.Join(base, "fail")
	writeFile(t, fail, "", 0o644)
	script := filepath.Join(base, "maildrop.sh")
	writeFile(t, script, `#!/bin/sh
if [ -e `+fail+` ]; then echo "maildrop: temporarily out of order" >&2; exit 75; fi
f=`+out+`/msg.$$
{ echo "uid=$(id -u)"; for a in "$@"; do echo "arg=$a"; done; echo "--"; cat; } > $f.tmp && mv $f.tmp $f
`, 0o755)
	row := stockMaildropRow(t)
	if !strings.Contains(row, "user=vmail") || !strings.Contains(row, "argv=/usr/bin/maildrop ") {
		t.Fatalf("unexpected stock maildrop row:\n%s", row)
	}
	row = strings.Replace(row, "user=vmail", "user="+acct.name, 1)
	row = strings.Replace(row, "argv=/usr/bin/maildrop ", "argv="+script+" ", 1)
	writeFile(t, filepath.Join(base, "transport"), "pipe.test maildrop:\n", 0o644)
	s := startWithMaster(t, "relay_domains = pipe.test\n"+
		"transport_maps = texthash:"+base+"/transport\n"+
		"maildrop_destination_recipient_limit = 1\n",
		"127.0.0.1:{{PORT}} inet n - n - - smtpd\n"+row)
	id := swaksSend(t, s, "sender@example.org", "Bob@Pipe.Test", "to maildrop", "hello maildrop")
	s.waitLog(sentLine("pipe", id, "Bob@Pipe.Test", "", "maildrop", "4.3.0", "deferred", `temporary failure\. Command output: maildrop: temporarily out of order `), 20*time.Second)
	q := postqueue(t, s, "-p")
	if !strings.Contains(q, id) || !strings.Contains(q, "Bob@Pipe.Test") || !strings.Contains(q, "temporarily out of order") {
		t.Errorf("mailq does not show the deferred message and its reason:\n%s", q)
	}
	if files, _ := filepath.Glob(filepath.Join(out, "msg.*")); len(files) != 0 {
		t.Fatalf("the failing script left %v", files)
	}
	if err := os.Remove(fail); err != nil {
		t.Fatal(err)
	}
	sent := sentLine("pipe", id, "Bob@Pipe.Test", "", "maildrop", "2.0.0", "sent", "delivered via maildrop service")
	flush(t, s, sent)
	s.waitLog(sent, 20*time.Second)
	s.waitLog(`postfix/qmgr\[\d+\]: `+id+`: removed`, 10*time.Second)
	files, _ := filepath.Glob(filepath.Join(out, "msg.*"))
	if len(files) != 1 {
		t.Fatalf("script ran %d times after the flush, want once: %v", len(files), files)
	}
	b, _ := os.ReadFile(files[0])
	text := string(b)
	// flags=h and u lower-case ${recipient} on the command line only;
	// Delivered-To has the envelope recipient as it came (pipe(8)).
	for _, want := range []string{
		"uid=" + strconv.Itoa(acct.uid) + "\n",
		"arg=-d\narg=bob@pipe.test\n--\n",
		"--\nReturn-Path: <sender@example.org>\n",
		"\nDelivered-To: Bob@Pipe.Test\n",
		"\nSubject: to maildrop\n",
		"\nhello maildrop\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("script's record lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(postqueue(t, s, "-p"), "Mail queue is empty") {
		t.Errorf("queue not empty after delivery")
	}
}

// TestDeliverUnwritableMaildir: with enable_original_recipient = no,
// messages carry no X-Original-To; a Maildir the recipient cannot write
// (root's, 0700) defers the recipient with the reason mailq shows; once
// the admin fixes it, `moat postqueue -c DIR -f` delivers exactly once.
// The same server also delivers and bounces (an unknown local user,
// the notice to the local sender), and pflogsumm, run on its mail log,
// counts what the test caused.
func TestDeliverUnwritableMaildir(t *testing.T) {
	needDeliveryRoot(t)
	t.Parallel()
	ok := homedAccount(t)
	locked := homedAccount(t)
	sender := homedAccount(t)
	s := startServer(t, "enable_original_recipient = no\n")
	dom := "@mx.moat.test"
	mkdirOwned(t, s.maildir(locked.name), 0o700, 0, 0)

	sent := swaksSend(t, s, "sender@example.org", ok.name+dom, "plain", "hello")
	s.waitLog(sentLine("local", sent, ok.name+dom, "", "local", "2.0.0", "sent", "delivered to maildir"), 20*time.Second)
	s.waitDelivered(ok.name, 1, 10*time.Second)
	_, text := waitMaildirSubject(t, s, s.maildir(ok.name), "plain")
	if strings.Contains(text, "X-Original-To:") || !strings.Contains(text, "Delivered-To: "+ok.name+dom+"\n") {
		t.Errorf("with enable_original_recipient = no, want Delivered-To and no X-Original-To:\n%s", text)
	}

	deferred := swaksSend(t, s, "sender@example.org", locked.name+dom, "locked out", "hello")
	line := s.waitLog(sentLine("local", deferred, locked.name+dom, "", "local", "4.2.0", "deferred",
		`maildir delivery failed: create maildir file `+regexp.QuoteMeta(s.maildir(locked.name))+`/tmp\S*: Permission denied`), 20*time.Second)
	reason := line[strings.Index(line, "status=deferred (")+len("status=deferred ("):]
	reason = strings.TrimSuffix(reason, ")")
	q := postqueue(t, s, "-p")
	if !strings.Contains(q, deferred) || !strings.Contains(q, locked.name+dom) {
		t.Errorf("mailq does not show %s for %s:\n%s", deferred, locked.name, q)
	}
	// mailq folds the reason to its column width; compare its words.
	if words := strings.Fields(reason); len(words) > 0 && !strings.Contains(q, words[0]) {
		t.Errorf("mailq does not show the reason %q:\n%s", reason, q)
	}

	bounced := swaksSend(t, s, sender.name+dom, "nosuchuser"+dom, "to nobody", "hello")
	s.waitLog(sentLine("local", bounced, "nosuchuser"+dom, "", "local", "5.1.1", "bounced", `unknown user: "nosuchuser"`), 20*time.Second)
	s.waitDelivered(sender.name, 1, 20*time.Second)

	if err := os.Chown(s.maildir(locked.name), locked.uid, locked.gid); err != nil {
		t.Fatal(err)
	}
	delivered := sentLine("local", deferred, locked.name+dom, "", "local", "2.0.0", "sent", "delivered to maildir")
	flush(t, s, delivered)
	s.waitLog(delivered, 20*time.Second)
	s.waitLog(`postfix/qmgr\[\d+\]: `+deferred+`: removed`, 10*time.Second)
	s.waitDelivered(locked.name, 1, 10*time.Second)
	if !strings.Contains(postqueue(t, s, "-p"), "Mail queue is empty") {
		t.Errorf("queue not empty after the flush")
	}
	// A second flush finds nothing to deliver again.
	postqueue(t, s, "-f")
	time.Sleep(500 * time.Millisecond)
	s.waitDelivered(locked.name, 1, time.Second)

	// pflogsumm: three messages received over SMTP; three delivered
	// (ok, locked after the flush, the notice to sender); one message
	// deferred once; one bounced.
	sum, err := runTool(t, 30*time.Second, s.log(), "pflogsumm")
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, sum)
	}
	for _, re := range []string{
		`(?m)^\s+3\s+delivered$`,
		`(?m)^\s+3\s+received$`,
		`(?m)^\s+1\s+deferred\s+\(1\s+deferrals\)$`,
		`(?m)^\s+1\s+bounced$`,
		`(?m)^\s+0\s+rejected`,
	} {
		if !regexp.MustCompile(re).MatchString(sum) {
			t.Errorf("pflogsumm output lacks %q:\n%s", re, sum)
		}
	}
}

// deliveryChildren returns the delivery children (moat delivery-child)
// of this server's master children, not other tests': their parent is a
// master-child with this configuration directory (the queue manager, or
// the delivery executor that master.cf's local row runs).
func (s *server) deliveryChildren() []int {
	s.t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		s.t.Fatal(err)
	}
	ppid := regexp.MustCompile(`(?m)^PPid:\s+(\d+)$`)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(b), "\x00delivery-child") {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		m := ppid.FindSubmatch(st)
		if err != nil || m == nil {
			continue
		}
		parent, err := os.ReadFile(fmt.Sprintf("/proc/%s/cmdline", m[1]))
		if err == nil && strings.Contains(string(parent), "\x00master-child\x00") && strings.Contains(string(parent), "\x00-c\x00"+s.dir+"\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}

var crashMessageID = regexp.MustCompile(`(?m)^Message-ID: <crash-(\d+)@moat\.test>`)

// TestDeliverCrashExactlyOnce: 300 messages to two local users while
// the queue manager child, its delivery children and (every other time)
// the delivery executor are killed with SIGKILL several times
// mid-delivery; the master restarts the queue
// manager, and in the end each user's Maildir holds every message
// exactly once (by Message-ID: Maildir copies are keyed by queue ID and
// recipient) and the queue is empty.
func TestDeliverCrashExactlyOnce(t *testing.T) {
	needDeliveryRoot(t)
	if testing.Short() {
		t.Skip("load test skipped in -short mode")
	}
	t.Parallel()
	const total = 300
	u1, u2 := homedAccount(t), homedAccount(t)
	// Short retry times: mail a killed delivery child deferred comes
	// back within the test's bounds.
	s := startWithMaster(t, "queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\n",
		"127.0.0.1:{{PORT}} inet n - n - - smtpd\nqmgr      unix  n       -       n       300     1       qmgr\n")
	script := fmt.Sprintf(`
import smtplib
s = smtplib.SMTP("127.0.0.1", %d, timeout=30)
s.ehlo("client.example.org")
for i in range(%d):
    s.sendmail("sender@example.org", ["%s@mx.moat.test", "%s@mx.moat.test"],
        "Message-ID: <crash-%%d@moat.test>\r\nSubject: crash %%d\r\n\r\nbody %%d\r\n" %% (i, i, i))
s.quit()
`, s.port, total, u1.name, u2.name)
	sender := exec.Command("python3", "-c", script)
	var senderOut strings.Builder
	sender.Stdout, sender.Stderr = &senderOut, &senderOut
	if err := sender.Start(); err != nil {
		t.Fatal(err)
	}
	senderDone := make(chan error, 1)
	go func() { senderDone <- sender.Wait() }()
	t.Cleanup(func() {
		sender.Process.Kill()
		<-senderDone
	})

	kills, childKills, execKills := 0, 0, 0
	deadline := time.Now().Add(60 * time.Second)
	for kills < 4 && time.Now().Before(deadline) {
		time.Sleep(400 * time.Millisecond)
		n1, n2 := s.delivered(u1.name), s.delivered(u2.name)
		if n1+n2 >= 2*total-20 {
			break // too late to catch it mid-delivery
		}
		qm := s.childPIDs("qmgr/unix")
		if len(qm) != 1 || n1+n2 == 0 {
			continue // being restarted, or not delivering yet
		}
		for _, pid := range s.deliveryChildren() {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				childKills++
			}
		}
		if kills%2 == 1 {
			// The delivery executor too, every other time: staged
			// Maildir writes it has not committed (or is committing)
			// are retried, never lost nor doubled.
			for _, pid := range s.childPIDs("local/unix") {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					execKills++
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
		if syscall.Kill(qm[0], syscall.SIGKILL) == nil {
			kills++
		}
	}
	select {
	case err := <-senderDone:
		senderDone <- err
		if err != nil {
			t.Fatalf("smtplib: %v\n%s", err, senderOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("smtplib did not finish within 60s")
	}
	t.Logf("killed the queue manager %d times, the executor %d times and %d delivery children", kills, execKills, childKills)
	if kills == 0 {
		t.Errorf("delivery finished before the queue manager could be killed")
	}
	// master(8)'s words for a killed child. Not always once per kill: a
	// kill can race with the previous child's exit and the restart.
	s.waitLogCount(`postfix/master\[\d+\]: warning: process \S+/qmgr pid \d+ killed by signal 9$`, 1, 10*time.Second)
	deadline = time.Now().Add(90 * time.Second)
	for s.delivered(u1.name)+s.delivered(u2.name) < 2*total && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := s.delivered(u1.name) + s.delivered(u2.name); n < 2*total {
		t.Fatalf("%d of %d deliveries after 90s\nmailq:\n%s\nlog (end):\n%s", n, 2*total, tail(postqueue(t, s, "-p"), 3000), tail(s.log(), 6000))
	}
	for _, u := range []string{u1.name, u2.name} {
		s.waitDelivered(u, total, 10*time.Second)
		seen := map[string]int{}
		for f, text := range maildirFiles(s.maildir(u)) {
			m := crashMessageID.FindStringSubmatch(text)
			if m == nil {
				t.Errorf("%s: no crash Message-ID", f)
				continue
			}
			seen[m[1]]++
		}
		for i := 0; i < total; i++ {
			if n := seen[strconv.Itoa(i)]; n != 1 {
				t.Errorf("%s: message crash-%d delivered %d times, want once", u, i, n)
			}
		}
	}
	deadline = time.Now().Add(20 * time.Second)
	for !queueEmpty(t, filepath.Join(s.dir, "spool")) {
		if time.Now().After(deadline) {
			t.Fatalf("queue not empty 20s after the last delivery:\n%s", postqueue(t, s, "-p"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
