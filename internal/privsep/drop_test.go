package privsep

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The helper process protocol: the parent re-executes the test binary with
// helperEnv set; the child drops privileges as told by the other
// variables, reports what it could and could not do as "key: value"
// lines, prints "READY" and waits for its stdin to close, so the parent
// can inspect it from outside through /proc meanwhile.
const (
	helperEnv = "MOAT_PRIVSEP_HELPER"
	envUID    = "MOAT_PRIVSEP_UID"
	envGID    = "MOAT_PRIVSEP_GID"
	envJail   = "MOAT_PRIVSEP_JAIL"
	envSecret = "MOAT_PRIVSEP_SECRET"   // a root-only file the child must not read
	envOut    = "MOAT_PRIVSEP_OUTSIDE"  // a path the child must not create
	envHost   = "MOAT_PRIVSEP_HOST"     // a name to resolve after the drop
	envDirFD  = "MOAT_PRIVSEP_DIRFD"    // a directory to hold open across Drop
	envRoot   = "MOAT_PRIVSEP_ROOTJAIL" // Jail only, staying root
)

func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return
	}
	os.Exit(helper())
}

func helper() int {
	out := bufio.NewWriter(os.Stdout)
	say := func(k string, v any) { fmt.Fprintf(out, "%s: %v\n", k, v) }
	defer out.Flush()
	uid, _ := strconv.Atoi(os.Getenv(envUID))
	gid, _ := strconv.Atoi(os.Getenv(envGID))
	// Threads that exist before the drop must change too: pin goroutines
	// to OS threads of their own and keep them alive until exit.
	hold := make(chan struct{})
	started := make(chan struct{})
	for i := 0; i < 4; i++ {
		go func() {
			runtime.LockOSThread()
			started <- struct{}{}
			<-hold
		}()
		<-started
	}
	if d := os.Getenv(envDirFD); d != "" {
		f, err := os.Open(d)
		if err != nil {
			say("dirfd", err)
			return 1
		}
		defer f.Close()
	}
	if os.Getenv(envRoot) != "" {
		say("jail", errText(Jail(os.Getenv(envJail))))
		_, err := os.Stat("/secret")
		say("secret", errText(err))
		fmt.Fprintln(out, "READY")
		out.Flush()
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	}
	err := Drop(Account{Name: "test", UID: uid, GID: gid}, os.Getenv(envJail))
	say("drop", errText(err))
	if err != nil {
		say("uid", os.Getuid())
	} else {
		say("again notroot", errors.Is(Drop(Account{Name: "test", UID: uid, GID: gid}, ""), ErrNotRoot))
		say("setuid0", errText(syscall.Setuid(0)))
		say("setgroups0", errText(syscall.Setgroups([]int{0})))
		say("chroot", errText(syscall.Chroot("/")))
		_, err = os.ReadFile(os.Getenv(envSecret))
		say("secret", errText(err))
		say("outside", errText(os.WriteFile(os.Getenv(envOut), []byte("x"), 0o644)))
		_, err = os.ReadFile("/../../../../../etc/passwd")
		say("passwd", errText(err))
		if h := os.Getenv(envHost); h != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			addrs, err := net.DefaultResolver.LookupHost(ctx, h)
			cancel()
			if err != nil {
				say("lookup", errText(err))
			} else {
				say("lookup", strings.Join(addrs, ","))
			}
		}
		name, off := time.Now().Zone()
		say("zone", fmt.Sprintf("%s%+d", name, off))
	}
	fmt.Fprintln(out, "READY")
	out.Flush()
	_, _ = io.Copy(io.Discard, os.Stdin)
	close(hold)
	return 0
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// child is a running helper process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	report map[string]string
}

// startHelper runs the helper with env and reads its report.
func startHelper(t *testing.T, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	// GODEBUG=netdns=go: moat's binary has no cgo, so it always uses Go's
	// resolver; the test binary may link cgo, so ask for Go's explicitly.
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=1", "GODEBUG=netdns=go"}, env...)...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: in, report: map[string]string{}}
	t.Cleanup(func() {
		in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("helper: %v", err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("helper did not exit")
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(outp)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("helper ended before READY; report %v", c.report)
			}
			if l == "READY" {
				go func() {
					for range lines {
					}
				}()
				t.Logf("helper report: %v", c.report)
				return c
			}
			k, v, _ := strings.Cut(l, ": ")
			c.report[k] = v
		case <-deadline:
			t.Fatalf("helper did not report in time; so far %v", c.report)
		}
	}
}

// threads reads every thread's status of the running child from outside.
func (c *child) threads(t *testing.T) []Status {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", c.cmd.Process.Pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []Status
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), "status"))
		if err != nil {
			continue
		}
		st, err := ParseStatus(data)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out = append(out, st)
	}
	return out
}

func (c *child) root(t *testing.T) string {
	t.Helper()
	r, err := os.Readlink(fmt.Sprintf("/proc/%d/root", c.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mailOwner is the host's Debian postfix account, which CI has; tests that
// change identity need root and it.
func mailOwner(t *testing.T) Account {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("dropping privileges needs root (CI runs as root)")
	}
	u, err := user.Lookup("postfix")
	if err != nil {
		t.Skip("no postfix account on this host")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return Account{Name: "postfix", UID: uid, GID: gid}
}

func accountEnv(a Account) []string {
	return []string{envUID + "=" + strconv.Itoa(a.UID), envGID + "=" + strconv.Itoa(a.GID)}
}

// newJail makes a root-owned 0755 directory as queue_directory is.
func newJail(t *testing.T) string {
	t.Helper()
	j, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(j, 0o755); err != nil {
		t.Fatal(err)
	}
	return j
}

func writeFile(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func checkThreads(t *testing.T, c *child, a Account) {
	t.Helper()
	ths := c.threads(t)
	if len(ths) < 5 {
		t.Errorf("only %d threads; the test wants several", len(ths))
	}
	for i, st := range ths {
		if err := st.Is(a); err != nil {
			t.Errorf("thread %d: %v", i, err)
		}
	}
}

// TestDropJailed drops into a prepared jail and proves from /proc that every
// thread is mail_owner and the root is the jail, and from inside that
// root cannot be regained, root-only and outside files are out of reach,
// and Go's resolver works on the jail's copies of the host files.
func TestDropJailed(t *testing.T) {
	a := mailOwner(t)
	jail := newJail(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "hosts"), "127.0.0.1 localhost\n192.0.2.7 moat-jail-test.example\n", 0o644)
	writeFile(t, filepath.Join(src, "nsswitch.conf"), "hosts: files dns\n", 0o644)
	writeFile(t, filepath.Join(src, "resolv.conf"), "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n", 0o644)
	if err := prepareJail(jail, src); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(jail, "secret"), "root only\n", 0o600)
	outside := filepath.Join(t.TempDir(), "outside")
	c := startHelper(t, append(accountEnv(a), envJail+"="+jail, envSecret+"=/secret",
		envOut+"="+outside, envHost+"=moat-jail-test.example")...)
	want := map[string]string{
		"drop":          "ok",
		"again notroot": "true",
		"setuid0":       "operation not permitted",
		"setgroups0":    "operation not permitted",
		"chroot":        "operation not permitted",
		"secret":        "open /secret: permission denied",
		"outside":       "open " + outside + ": no such file or directory",
		"passwd":        "open /../../../../../etc/passwd: no such file or directory",
		"lookup":        "192.0.2.7",
	}
	for k, v := range want {
		if c.report[k] != v {
			t.Errorf("%s: %q, want %q", k, c.report[k], v)
		}
	}
	if r := c.root(t); r != jail {
		t.Errorf("root %s, want %s", r, jail)
	}
	checkThreads(t, c, a)
	if _, err := os.Stat(outside); err == nil {
		t.Error("the jailed child wrote outside the jail")
	}
}

// TestDropJailHostFiles uses the host's own resolver files (PrepareJail):
// "localhost" resolves inside the jail, and local time is the host's.
func TestDropJailHostFiles(t *testing.T) {
	a := mailOwner(t)
	jail := newJail(t)
	if err := PrepareJail(jail); err != nil {
		t.Fatal(err)
	}
	c := startHelper(t, append(accountEnv(a), envJail+"="+jail, envHost+"=localhost",
		envSecret+"=/nonexistent", envOut+"=/nonexistent/x")...)
	if c.report["drop"] != "ok" {
		t.Fatalf("drop: %s", c.report["drop"])
	}
	addrs := c.report["lookup"]
	if !strings.Contains(addrs, "127.0.0.1") && !strings.Contains(addrs, "::1") {
		t.Errorf("localhost in the jail: %s", addrs)
	}
	name, off := time.Now().Zone()
	if os.Getenv("TZ") == "" && c.report["zone"] != fmt.Sprintf("%s%+d", name, off) {
		t.Errorf("zone in the jail %s, host %s%+d", c.report["zone"], name, off)
	}
}

// TestDropUnjailed: chroot = n keeps the host's root but the identity
// changes all the same.
func TestDropUnjailed(t *testing.T) {
	a := mailOwner(t)
	dir := t.TempDir() // root's, mode 0700
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, "root only\n", 0o600)
	c := startHelper(t, append(accountEnv(a), envSecret+"="+secret, envOut+"="+filepath.Join(dir, "new"))...)
	want := map[string]string{
		"drop":    "ok",
		"setuid0": "operation not permitted",
		"secret":  "open " + secret + ": permission denied",
		"outside": "open " + filepath.Join(dir, "new") + ": permission denied",
	}
	for k, v := range want {
		if c.report[k] != v {
			t.Errorf("%s: %q, want %q", k, c.report[k], v)
		}
	}
	if r := c.root(t); r != "/" {
		t.Errorf("root %s, want /", r)
	}
	checkThreads(t, c, a)
}

// TestDropRefusesDirFD: a directory descriptor outside the jail would be a
// way out; Drop refuses before changing anything.
func TestDropRefusesDirFD(t *testing.T) {
	a := mailOwner(t)
	jail := newJail(t)
	out := t.TempDir()
	c := startHelper(t, append(accountEnv(a), envJail+"="+jail, envDirFD+"="+out)...)
	if !strings.Contains(c.report["drop"], "is the directory "+out+", outside the jail") || c.report["uid"] != "0" {
		t.Errorf("report %v", c.report)
	}
	if r := c.root(t); r != "/" {
		t.Errorf("root %s after a refused drop", r)
	}
}

// TestDropUnsearchableJail: a jail mail_owner cannot enter would leave the
// daemon unable to open anything; Drop says so instead.
func TestDropUnsearchableJail(t *testing.T) {
	a := mailOwner(t)
	jail := newJail(t)
	if err := os.Chmod(jail, 0o700); err != nil {
		t.Fatal(err)
	}
	c := startHelper(t, append(accountEnv(a), envJail+"="+jail)...)
	if !strings.Contains(c.report["drop"], "the jail is not searchable by test: chmod 0755 the queue directory") {
		t.Errorf("report %v", c.report)
	}
}

// TestJailRoot: a chroot = y, unpriv = n row is jailed but stays root.
func TestJailRoot(t *testing.T) {
	needRoot(t)
	jail := newJail(t)
	writeFile(t, filepath.Join(jail, "secret"), "x", 0o600)
	c := startHelper(t, envRoot+"=1", envJail+"="+jail)
	if c.report["jail"] != "ok" || c.report["secret"] != "ok" {
		t.Errorf("report %v", c.report)
	}
	if r := c.root(t); r != jail {
		t.Errorf("root %s, want %s", r, jail)
	}
	for _, st := range c.threads(t) {
		if st.UID != [4]int{} {
			t.Errorf("uids %v, want root's", st.UID)
		}
	}
}

// TestDropRefusals are the checks made before anything changes, so they
// run in the test process itself.
func TestDropRefusals(t *testing.T) {
	if err := Drop(Account{Name: "root"}, ""); err == nil || !strings.Contains(err.Error(), "privileged or unset") {
		t.Errorf("uid 0: %v", err)
	}
	if err := Drop(Account{Name: "x", UID: 5, GID: 0}, ""); err == nil {
		t.Error("gid 0 accepted")
	}
	if os.Geteuid() != 0 {
		if err := Drop(Account{Name: "x", UID: 4242, GID: 4242}, ""); !errors.Is(err, ErrNotRoot) {
			t.Errorf("not root: %v", err)
		}
		return
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := Drop(Account{Name: "x", UID: 4242, GID: 4242}, open); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("writable jail: %v", err)
	}
	if err := Drop(Account{Name: "x", UID: 4242, GID: 4242}, "relative"); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("relative jail: %v", err)
	}
	if os.Geteuid() != 0 || os.Getuid() != 0 {
		t.Fatal("a refused Drop changed the test process's identity")
	}
}

func TestParseStatus(t *testing.T) {
	st, err := ParseStatus([]byte("Name:\tx\nUid:\t102\t102\t102\t102\nGid:\t105\t105\t105\t105\nGroups:\t\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapAmb:\t0000000000000000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Is(Account{UID: 102, GID: 105}); err != nil {
		t.Error(err)
	}
	self, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	st, err = ParseStatus(self)
	if err != nil {
		t.Fatal(err)
	}
	if st.UID[0] != os.Getuid() || st.GID[1] != os.Getegid() {
		t.Errorf("self %+v", st)
	}
	for _, bad := range []string{"Uid:\t1\t2\t3\n", "Uid:\t1 2 3 x\nGid:\t1 1 1 1\nGroups:\nCapPrm:\t0\nCapEff:\t0\n", ""} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	if self, err := os.ReadFile("/proc/self/status"); err == nil {
		f.Add(self)
	}
	f.Add([]byte("Uid:\t1\t1\t1\t1\nGid:\t2\t2\t2\t2\nGroups:\t3 4\nCapPrm:\t0\nCapEff:\tff\nCapAmb:\t0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseStatus(data)
		if err != nil {
			return
		}
		for _, id := range append(append(st.UID[:], st.GID[:]...), st.Groups...) {
			if id < 0 {
				t.Fatalf("negative id in %+v", st)
			}
		}
	})
}
