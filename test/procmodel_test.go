package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"

	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"moat/internal/testutil"
)

// The process model of issue 4, proven from outside: the master stays
// root, each master.cf service runs as a child of it with the identity
// and jail its row asks for (read back from /proc), a reload under load
// loses nothing, and stress mode turns on at a service's limit.

// startWithMaster is startServer with a master.cf of the test's own;
// "{{PORT}}" in it is the port the harness waits on for a greeting.
func startWithMaster(t *testing.T, extra, masterCF string) *server {
	t.Helper()
	dir := t.TempDir()
	prepareDir(t, dir)
	s := &server{t: t, dir: dir, port: freePort(t)}
	mainCF := strings.ReplaceAll(baseMainCF+extra, "{{DIR}}", dir)
	masterCF = strings.ReplaceAll(masterCF, "{{PORT}}", strconv.Itoa(s.port))
	for name, data := range map[string]string{"main.cf": mainCF, "master.cf": masterCF} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// childPIDs finds the master's children for service key ("name/type")
// from /proc: processes whose command line is moat master-child with this
// server's configuration directory.
func (s *server) childPIDs(key string) []int {
	s.t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		s.t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) < 2 || args[1] != "master-child" {
			continue
		}
		var cdir, svc string
		for i := 2; i+1 < len(args); i++ {
			switch args[i] {
			case "-c":
				cdir = args[i+1]
			case "-s":
				svc = args[i+1]
			}
		}
		if cdir == s.dir && svc == key {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStatus returns /proc/PID/status fields by name.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return out
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the master drops children to mail_owner and jails them")
	}
}

// TestPrivsepProc: a chroot = y smtpd runs as mail_owner (all four uid and
// gid fields, no supplementary groups) with its root at the queue
// directory; a chroot = n smtpd is mail_owner unjailed; the master stays
// root; the jailed smtpd receives mail end to end (swaks) and logs under
// its own PID.
func TestPrivsepProc(t *testing.T) {
	needRoot(t)
	t.Parallel()
	owner, err := user.Lookup("postfix")
	if err != nil {
		t.Skip("no postfix account (mail_owner)")
	}
	open := freePort(t)
	s := startWithMaster(t, "smtpd_peername_lookup = no\n", fmt.Sprintf(`127.0.0.1:{{PORT}} inet n - y - - smtpd
127.0.0.1:%d inet n - n - - smtpd
qmgr      unix  n       -       n       300     1       qmgr
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
`, open))
	spool := filepath.Join(s.dir, "spool")
	// The jailed smtpd greeting does not mean every child has dropped its
	// privileges yet; the master logs "daemon started" once all said ready
	// (which they do only after the drop).
	s.waitLog(`postfix/master\[\d+\]: daemon started`, 15*time.Second)
	want := func(pid int, jailed bool) {
		t.Helper()
		st := procStatus(t, pid)
		if u := strings.Repeat(owner.Uid+" ", 4); st["Uid"] != strings.TrimSpace(u) {
			t.Errorf("pid %d: Uid %q, want mail_owner's %s in all four fields", pid, st["Uid"], owner.Uid)
		}
		if g := strings.Repeat(owner.Gid+" ", 4); st["Gid"] != strings.TrimSpace(g) {
			t.Errorf("pid %d: Gid %q, want mail_owner's %s in all four fields", pid, st["Gid"], owner.Gid)
		}
		if st["Groups"] != "" {
			t.Errorf("pid %d: supplementary groups %q, want none", pid, st["Groups"])
		}
		root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
		if err != nil {
			t.Fatal(err)
		}
		if jailed && root != spool {
			t.Errorf("pid %d: root %s, want the queue directory %s", pid, root, spool)
		}
		if !jailed && root != "/" {
			t.Errorf("pid %d: root %s, want / (chroot = n)", pid, root)
		}
	}
	jailed := s.childPIDs(fmt.Sprintf("127.0.0.1:%d/inet", s.port))
	free := s.childPIDs(fmt.Sprintf("127.0.0.1:%d/inet", open))
	if len(jailed) != 1 || len(free) != 1 {
		t.Fatalf("smtpd children: %v jailed, %v unjailed; want one each", jailed, free)
	}
	want(jailed[0], true)
	want(free[0], false)
	if anvils := s.childPIDs("anvil/unix"); len(anvils) != 1 {
		t.Errorf("anvil children %v, want one", anvils)
	} else {
		want(anvils[0], false)
	}
	if st := procStatus(t, s.cmd.Process.Pid); st["Uid"] != "0 0 0 0" {
		t.Errorf("master Uid %q, want root", st["Uid"])
	}

	out, err := runTool(t, 30*time.Second, "", "swaks", "--server", s.addr(),
		"--from", "sender@example.org", "--to", "jailuser@mx.moat.test")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	s.waitDelivered("jailuser", 1, 20*time.Second)
	s.waitLog(fmt.Sprintf(`postfix/smtpd\[%d\]: [0-9A-Za-z]+: client=`, jailed[0]), 5*time.Second)
	qm := s.childPIDs("qmgr/unix")
	if len(qm) != 1 {
		t.Fatalf("qmgr children %v, want one", qm)
	}
	s.waitLog(fmt.Sprintf(`postfix/qmgr\[%d\]: [0-9A-Za-z]+: removed`, qm[0]), 5*time.Second)

	s.stop()
	for _, key := range []string{fmt.Sprintf("127.0.0.1:%d/inet", s.port), "qmgr/unix", "anvil/unix"} {
		if p := s.childPIDs(key); len(p) > 0 {
			t.Errorf("after stop, %s still runs: %v", key, p)
		}
	}
}

// TestDebianMasterCF: Debian's unmodified master.cf starts; every stock
// service is named once in the log as run, folded or not run yet.
func TestDebianMasterCF(t *testing.T) {
	t.Parallel()
	stock, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		t.Skip("no /usr/share/postfix/master.cf.dist")
	}
	// The stock smtp row listens on port 25 of inet_interfaces (loopback
	// here); the test adds its own port, as an admin adds a submission
	// port. Where port 25 is taken (or not ours to bind), the stock row
	// moves to another free port, the only change.
	text := string(stock)
	if ln, err := net.Listen("tcp4", "127.0.0.1:25"); err == nil {
		ln.Close()
	} else {
		text = strings.Replace(text, "\nsmtp      inet", fmt.Sprintf("\n127.0.0.1:%d inet", freePort(t)), 1)
	}
	s := startWithMaster(t, "", text+"\n127.0.0.1:{{PORT}} inet n - y - - smtpd\n")
	s.waitLog(`service tlsmgr/unix \(command tlsmgr, master.cf line \d+\): not run yet`, 5*time.Second)
	s.waitLog(`service cleanup/unix \(command cleanup, master.cf line \d+\) is folded into smtpd`, 5*time.Second)
	s.waitLog(`service postlog/unix-dgram \(command postlogd, master.cf line \d+\) is folded into`, 5*time.Second)
	if n := strings.Count(s.log(), "command bounce,"); n != 1 {
		t.Errorf("bounce named %d times, want once", n)
	}
}

// TestReloadUnderLoad: 20 reloads while smtp-source sends 2000 messages,
// 20 sessions at a time, a connection per message: smtp-source sees
// every connection served (exit 0), and every message acknowledged is
// delivered exactly once.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test skipped in -short mode")
	}
	t.Parallel()
	const total = 2000
	s := startServer(t, "")
	tool := testutil.Tool(t, "smtp-source")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// smtp-source opens a connection per message, so sessions start and
	// end on every generation of children. 16 KB messages make the run
	// outlast 20 reloads.
	cmd := exec.CommandContext(ctx, tool, "-v", "-s", "20", "-m", strconv.Itoa(total),
		"-l", "16384", "-f", "load@example.org", "-t", "user@mx.moat.test", s.addr())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	reloads := 0
	var err error
loop:
	for reloads < 20 {
		select {
		case err = <-done:
			break loop
		case <-time.After(20 * time.Millisecond):
			// One reload at a time: SIGHUPs sent while the master is
			// reloading coalesce, as pending signals do.
			s.cmd.Process.Signal(syscall.SIGHUP)
			reloads++
			s.waitLogCount(`: reload -- version`, reloads, 20*time.Second)
		}
	}
	if reloads < 20 {
		t.Fatalf("smtp-source finished (%v) after only %d reloads", err, reloads)
	}
	err = <-done
	if err != nil {
		t.Fatalf("smtp-source after %d reloads: %v\n%s", reloads, err, tail(out.String(), 2000))
	}
	acked := map[string]bool{}
	for _, m := range queuedAs.FindAllStringSubmatch(out.String(), -1) {
		acked[m[1]] = true
	}
	if len(acked) != total {
		t.Fatalf("%d of %d messages acknowledged", len(acked), total)
	}
	s.waitDelivered("user", total, 2*time.Minute)
	seen := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(s.maildir("user"), "new", "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := receivedID.FindSubmatch(b); m != nil {
			seen[string(m[1])]++
		}
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("%s: delivered %d times, want once", id, seen[id])
		}
	}
	n := strings.Count(s.log(), "postfix/master[")
	t.Logf("%d reloads during %d messages; %d master log lines; reload lines %d", reloads, total, n,
		strings.Count(s.log(), ": reload -- version"))
	if got := strings.Count(s.log(), ": reload -- version"); got < reloads {
		t.Errorf("%d reloads logged, want %d", got, reloads)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestStressMode: at maxproc the service logs Postfix's process-limit
// warnings with the STRESS_README line, and a session accepted while at
// the limit runs with stress=yes (seen through a ${stress?...} banner);
// once load drops, stress is off again.
func TestStressMode(t *testing.T) {
	t.Parallel()
	s := startWithMaster(t, "smtpd_banner = $myhostname ESMTP ${stress?{stressed}:{calm}}\nsmtpd_peername_lookup = no\n",
		"127.0.0.1:{{PORT}} inet n - n - 2 smtpd\n")
	greet := func(c net.Conn) string {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("greeting: %v", err)
		}
		return strings.TrimSpace(line)
	}
	// The harness's start-up probes are sessions too: let them end.
	s.waitLog(`disconnect from`, 10*time.Second)
	time.Sleep(200 * time.Millisecond)
	var held []net.Conn
	for range 2 {
		c, err := net.DialTimeout("tcp", s.addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if g := greet(c); !strings.HasSuffix(g, "calm") {
			t.Fatalf("greeting below the limit %q, want calm", g)
		}
		held = append(held, c)
	}
	third, err := net.DialTimeout("tcp", s.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	s.waitLog(`warning: service "127\.0\.0\.1:\d+" \(\[127\.0\.0\.1\]:\d+\) has reached its process limit "2": new clients may experience noticeable delays`, 10*time.Second)
	s.waitLog(`warning: see http://www\.postfix\.org/STRESS_README\.html for examples of stress-adapting configuration settings`, 5*time.Second)
	s.waitLog(`stress mode on`, 5*time.Second)
	held[0].Close()
	if g := greet(third); !strings.HasSuffix(g, "stressed") {
		t.Errorf("greeting at the limit %q, want stressed", g)
	}
	held[1].Close()
	third.Close()
	s.waitLog(`stress mode off`, 10*time.Second)
	c, err := net.DialTimeout("tcp", s.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if g := greet(c); !strings.HasSuffix(g, "calm") {
		t.Errorf("greeting after load dropped %q, want calm", g)
	}
}

// TestReloadFinishesSessions: a session open across a reload finishes on
// the old smtpd child, which then exits; a new connection is served by
// the new child; the listening socket never closes.
func TestReloadFinishesSessions(t *testing.T) {
	t.Parallel()
	s := startWithMaster(t, "smtpd_peername_lookup = no\n", "127.0.0.1:{{PORT}} inet n - n - - smtpd\n")
	key := fmt.Sprintf("127.0.0.1:%d/inet", s.port)
	before := s.childPIDs(key)
	if len(before) != 1 {
		t.Fatalf("smtpd children %v, want one", before)
	}
	d := dial(t, s.addr())
	d.expect("220")
	d.cmd("EHLO client.example", "250")
	d.cmd("MAIL FROM:<sender@example.org>", "250")

	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitLog(`: reload -- version`, 10*time.Second)
	var after []int
	for deadline := time.Now().Add(10 * time.Second); ; {
		after = s.childPIDs(key)
		if len(after) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(after) != 2 {
		t.Fatalf("smtpd children after reload %v, want the draining old one and the new one", after)
	}

	// A new client gets the new child.
	n := dial(t, s.addr())
	n.expect("220")
	n.cmd("QUIT", "221")
	s.waitLog(`postfix/smtpd\[\d+\]: disconnect from`, 5*time.Second)
	newPID := after[0]
	if newPID == before[0] {
		newPID = after[1]
	}
	s.waitLog(fmt.Sprintf(`postfix/smtpd\[%d\]: connect from`, newPID), 5*time.Second)

	// The old session goes on, on the old child.
	d.cmd("RCPT TO:<across@mx.moat.test>", "250")
	d.cmd("DATA", "354")
	d.send("Subject: across a reload\r\n\r\nstill here\r\n.\r\n")
	d.expect("250")
	d.cmd("QUIT", "221")
	s.waitDelivered("across", 1, 20*time.Second)
	s.waitLog(fmt.Sprintf(`postfix/smtpd\[%d\]: disconnect from .* quit=1`, before[0]), 5*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if p := s.childPIDs(key); len(p) == 1 && p[0] == newPID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old smtpd child %d still runs after its last session: %v", before[0], s.childPIDs(key))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
