package master

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// standIn is the tests' ConnServer: it greets with the service's
// smtpd_banner, so a test sees which configuration generation serves it,
// and answers every line with the same text until QUIT.
type standIn struct {
	banner string
	mu     sync.Mutex
	closed bool
}

func (s *standIn) ServeConn(ctx context.Context, c net.Conn) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	fmt.Fprintf(c, "220 %s\r\n", s.banner)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.HasPrefix(strings.ToUpper(line), "QUIT") {
			fmt.Fprintf(c, "221 %s\r\n", s.banner)
			return
		}
		fmt.Fprintf(c, "250 %s\r\n", s.banner)
	}
}

func (s *standIn) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func (s *standIn) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// servers records every stand-in built, so tests can see generations close.
type servers struct {
	mu    sync.Mutex
	built []*standIn
}

func (r *servers) factories() map[string]ServerFactory {
	return map[string]ServerFactory{"smtpd": func(d ServiceDeps) (ConnServer, error) {
		s := &standIn{banner: d.Config.Get("smtpd_banner")}
		r.mu.Lock()
		r.built = append(r.built, s)
		r.mu.Unlock()
		return s, nil
	}}
}

func (r *servers) get(i int) *standIn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.built[i]
}

// fixture is a configuration directory, queue and log in t.TempDir().
type fixture struct {
	t      *testing.T
	dir    string
	srv    *servers
	events chan Event
	done   chan error
	cancel context.CancelFunc
	reload chan struct{}
}

func newFixture(t *testing.T, mainExtra, masterCf string) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{t: t, dir: dir, srv: &servers{}, events: make(chan Event, 16), reload: make(chan struct{})}
	f.writeMain(mainExtra)
	f.write("master.cf", masterCf)
	return f
}

func (f *fixture) write(name, text string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(text), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) writeMain(extra string) {
	f.write("main.cf", fmt.Sprintf(`queue_directory = %s/spool
maillog_file = %s/maillog
maillog_file_prefixes = %s
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.test.example
%s
`, f.dir, f.dir, f.dir, extra))
}

func (f *fixture) opts() Options {
	return Options{
		ConfigDir: f.dir, Servers: f.srv.factories(), Reload: f.reload,
		Notify: func(e Event) { f.events <- e }, StopTimeout: 2 * time.Second,
	}
}

// start runs the master and waits until it is ready.
func (f *fixture) start() Event {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.done = make(chan error, 1)
	go func() { f.done <- Run(ctx, f.opts()) }()
	select {
	case e := <-f.events:
		if e.Kind != Ready {
			f.t.Fatalf("first event %v, want Ready", e.Kind)
		}
		f.t.Cleanup(func() { f.stop() })
		return e
	case err := <-f.done:
		f.t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		f.t.Fatal("master not ready within 10s")
	}
	return Event{}
}

// stop cancels the master and returns Run's result (once).
func (f *fixture) stop() error {
	if f.cancel == nil {
		return nil
	}
	f.cancel()
	f.cancel = nil
	select {
	case err := <-f.done:
		return err
	case <-time.After(15 * time.Second):
		f.t.Fatal("master did not stop within 15s")
	}
	return nil
}

func (f *fixture) doReload(want EventKind) Event {
	f.t.Helper()
	select {
	case f.reload <- struct{}{}:
	case <-time.After(5 * time.Second):
		f.t.Fatal("reload not taken")
	}
	select {
	case e := <-f.events:
		if e.Kind != want {
			f.t.Fatalf("reload event %v (%v), want %v", e.Kind, e.Err, want)
		}
		return e
	case <-time.After(10 * time.Second):
		f.t.Fatal("no reload event within 10s")
	}
	return Event{}
}

// log returns the log file once it contains want (bounded wait).
func (f *fixture) waitLog(want string) string {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(f.dir, "maillog"))
		if strings.Contains(string(data), want) || time.Now().After(deadline) {
			if !strings.Contains(string(data), want) {
				f.t.Fatalf("log lacks %q:\n%s", want, data)
			}
			return string(data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client is one SMTP-ish connection.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr net.Addr) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// line reads one reply line within d; "" on timeout.
func (c *client) line(d time.Duration) string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(d))
	s, err := c.r.ReadString('\n')
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return ""
		}
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(s, "\r\n")
}

func (c *client) cmd(s string) string {
	c.t.Helper()
	fmt.Fprintf(c.c, "%s\r\n", s)
	return c.line(5 * time.Second)
}

const oneService = "127.0.0.1:0 inet n - n - - smtpd\n"

func TestStartServeStop(t *testing.T) {
	f := newFixture(t, "smtpd_banner = gen1", oneService+
		"pickup unix n - n 60 1 pickup\nqmgr unix n - n 300 1 qmgr\nqmgr2 unix n - n 300 1 qmgr\n")
	ev := f.start()
	addrs := ev.Addrs["127.0.0.1:0"]
	if len(addrs) != 1 {
		t.Fatalf("addrs %v", ev.Addrs)
	}
	pidPath := filepath.Join(f.dir, "spool", PIDFile)
	data, err := os.ReadFile(pidPath)
	if err != nil || string(data) != FormatPID(os.Getpid()) {
		t.Fatalf("pid file %q, %v", data, err)
	}
	if pid, running, err := Status(pidPath); !running || pid != os.Getpid() || err != nil {
		t.Fatalf("Status = %d %v %v", pid, running, err)
	}
	c := dial(t, addrs[0])
	if got := c.line(5 * time.Second); got != "220 gen1" {
		t.Fatalf("greeting %q", got)
	}
	for _, d := range []string{"incoming", "active", "deferred", "hold", "corrupt", "maildrop"} {
		if _, err := os.Stat(filepath.Join(f.dir, "spool", d)); err != nil {
			t.Errorf("queue: %v", err)
		}
	}
	// A session in progress is cancelled by stop, not waited on forever.
	if err := f.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(pidPath); !os.IsNotExist(err) {
		t.Errorf("pid file left: %v", err)
	}
	if _, running, _ := Status(pidPath); running {
		t.Error("Status says running after stop")
	}
	if _, err := net.DialTimeout("tcp", addrs[0].String(), time.Second); err == nil {
		t.Error("listener still open after stop")
	}
	log := f.waitLog("terminating on signal 15")
	abs, _ := filepath.Abs(f.dir)
	want := fmt.Sprintf("postfix/master[%d]: daemon started -- version 0.1.0, configuration %s\n", os.Getpid(), abs)
	if !strings.Contains(log, want) {
		t.Errorf("log lacks %q:\n%s", want, log)
	}
	if n := strings.Count(log, "(command qmgr, master.cf line"); n != 1 {
		t.Errorf("qmgr named %d times, want once:\n%s", n, log)
	}
	if !strings.Contains(log, "service pickup/unix (command pickup, master.cf line 2): not run") {
		t.Errorf("pickup not named:\n%s", log)
	}
	if !f.srv.get(0).isClosed() {
		t.Error("server not closed at stop")
	}
}

func TestSecondStartRefused(t *testing.T) {
	f := newFixture(t, "", oneService)
	f.start()
	err := Run(context.Background(), f.opts())
	if !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
	// The first master is unharmed: its PID file is still there and locked.
	if _, running, _ := Status(filepath.Join(f.dir, "spool", PIDFile)); !running {
		t.Fatal("first master's PID file lost")
	}
}

func TestStaleLockFileIgnored(t *testing.T) {
	f := newFixture(t, "", oneService)
	p := filepath.Join(f.dir, "spool", PIDFile)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte(FormatPID(999999)), 0o644) // a crashed master's leftover
	f.start()
	data, _ := os.ReadFile(p)
	if string(data) != FormatPID(os.Getpid()) {
		t.Fatalf("pid file %q", data)
	}
}

func TestMaxprocWaitsThenProceeds(t *testing.T) {
	f := newFixture(t, "smtpd_banner = busy", "127.0.0.1:0 inet n - n - 1 smtpd\n")
	addr := f.start().Addrs["127.0.0.1:0"][0]
	a := dial(t, addr)
	if got := a.line(5 * time.Second); got != "220 busy" {
		t.Fatalf("a: %q", got)
	}
	b := dial(t, addr) // TCP connects (listen queue), but gets no greeting
	if got := b.line(300 * time.Millisecond); got != "" {
		t.Fatalf("b greeted while a holds the only slot: %q", got)
	}
	c := dial(t, addr)
	if got := c.line(200 * time.Millisecond); got != "" {
		t.Fatalf("c greeted: %q", got)
	}
	if got := a.cmd("QUIT"); got != "221 busy" {
		t.Fatalf("a quit: %q", got)
	}
	if got := b.line(5 * time.Second); got != "220 busy" {
		t.Fatalf("b after a left: %q", got)
	}
	b.cmd("QUIT")
	if got := c.line(5 * time.Second); got != "220 busy" {
		t.Fatalf("c after b left: %q", got)
	}
	log := f.waitLog("has reached its process limit")
	want := `warning: service "127.0.0.1:0" ([127.0.0.1]:0) has reached its process limit "1": new clients may experience noticeable delays`
	if n := strings.Count(log, want); n != 1 {
		t.Fatalf("warning %d times, want once:\n%s", n, log)
	}
}

func TestReloadKeepsListenerAndSessions(t *testing.T) {
	f := newFixture(t, "smtpd_banner = gen1", oneService+"127.0.0.2:0 inet n - n - - smtpd\n")
	ev := f.start()
	addr := ev.Addrs["127.0.0.1:0"][0]
	removed := ev.Addrs["127.0.0.2:0"][0]
	old := dial(t, addr)
	if got := old.line(5 * time.Second); got != "220 gen1" {
		t.Fatalf("old: %q", got)
	}
	f.writeMain("smtpd_banner = gen2")
	f.write("master.cf", oneService+"127.0.0.3:0 inet n - n - - smtpd\n  -o smtpd_banner=added\n")
	ev = f.doReload(Reloaded)
	// Port 0 means "any free port": had the socket been closed and bound
	// again, the kernel would have picked another one.
	if got := ev.Addrs["127.0.0.1:0"]; len(got) != 1 || got[0].String() != addr.String() {
		t.Fatalf("listener after reload %v, want the same %v", got, addr)
	}
	if _, ok := ev.Addrs["127.0.0.2:0"]; ok {
		t.Fatal("removed service still listed")
	}
	if _, err := net.DialTimeout("tcp", removed.String(), time.Second); err == nil {
		t.Error("removed service still accepts")
	}
	added := ev.Addrs["127.0.0.3:0"]
	if len(added) != 1 {
		t.Fatalf("added service not bound: %v", ev.Addrs)
	}
	if got := dial(t, added[0]).line(5 * time.Second); got != "220 added" {
		t.Fatalf("added service: %q", got)
	}
	fresh := dial(t, addr)
	if got := fresh.line(5 * time.Second); got != "220 gen2" {
		t.Fatalf("new session: %q", got)
	}
	// The session that began before the reload stays on its generation,
	// whose server is closed only when that session ends.
	if got := old.cmd("NOOP"); got != "250 gen1" {
		t.Fatalf("old session after reload: %q", got)
	}
	gen1 := f.srv.get(0)
	if gen1.isClosed() {
		t.Fatal("old generation closed while its session runs")
	}
	if got := old.cmd("QUIT"); got != "221 gen1" {
		t.Fatalf("old quit: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !gen1.isClosed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !gen1.isClosed() {
		t.Fatal("old generation not closed after its last session")
	}
	if !f.srv.get(1).isClosed() {
		t.Error("removed service's idle server not closed")
	}
	abs, _ := filepath.Abs(f.dir)
	log := f.waitLog(fmt.Sprintf("postfix/master[%d]: reload -- version 0.1.0, configuration %s", os.Getpid(), abs))
	if strings.Contains(log, "ignoring") {
		t.Errorf("a reload that changes only the banner and services warned:\n%s", log)
	}
}

func TestReloadBrokenConfigKeepsRunning(t *testing.T) {
	f := newFixture(t, "smtpd_banner = good", oneService)
	addr := f.start().Addrs["127.0.0.1:0"][0]
	f.writeMain("smtpd_banner = bad\nmessage_size_limit = lots")
	ev := f.doReload(ReloadFailed)
	if ev.Err == nil || !strings.Contains(ev.Err.Error(), "message_size_limit") {
		t.Fatalf("reload error %v", ev.Err)
	}
	if got := dial(t, addr).line(5 * time.Second); got != "220 good" {
		t.Fatalf("after failed reload: %q", got)
	}
	log := f.waitLog("reload failed: still running with the previous configuration")
	if !strings.Contains(log, "error: reload: ") || !strings.Contains(log, "main.cf") {
		t.Errorf("reload error not logged with its file:\n%s", log)
	}
	// A broken master.cf is refused the same way.
	f.writeMain("smtpd_banner = good")
	f.write("master.cf", oneService+"127.0.0.1:0 inet n - n - - postscreen\n")
	ev = f.doReload(ReloadFailed)
	if ev.Err == nil || !strings.Contains(ev.Err.Error(), "line 2") {
		t.Fatalf("master.cf reload error %v", ev.Err)
	}
	if got := dial(t, addr).line(5 * time.Second); got != "220 good" {
		t.Fatalf("after failed reload: %q", got)
	}
}

func TestStartErrors(t *testing.T) {
	cases := []struct{ name, mainExtra, master, want string }{
		{"unknown inet command", "", "smtp inet n - n - - postscreen\n", `master.cf, line 1: service smtp/inet: command "postscreen" is not a server moat can run`},
		{"private inet", "", "127.0.0.1:0 inet y - n - - smtpd\n", "inet service cannot be private"},
		{"bad main.cf", "message_size_limit = lots", oneService, "message_size_limit"},
		{"bad service name", "", "127.0.0.1:nope/x inet n - n - - smtpd\n", "line 1"},
		{"ipv6 disabled", "", "[::1]:0 inet n - n - - smtpd\n", "no valid IP address found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.mainExtra, tc.master)
			err := Run(context.Background(), f.opts())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want %q", err, tc.want)
			}
			if _, running, _ := Status(filepath.Join(f.dir, "spool", PIDFile)); running {
				t.Fatal("PID file locked after a failed start")
			}
		})
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := newFixture(t, "", ln.Addr().String()+" inet n - n - - smtpd\n")
	err = Run(context.Background(), f.opts())
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Run: %v", err)
	}
	f.waitLog("fatal: master.cf, line 1")
	if _, err := os.Stat(filepath.Join(f.dir, "spool", PIDFile)); !os.IsNotExist(err) {
		t.Errorf("pid file left after failed start: %v", err)
	}
}

// role is a stand-in background role (the queue manager's place).
type role struct {
	woke    chan string
	stopped chan struct{}
}

func (r *role) Run(ctx context.Context) error {
	<-ctx.Done()
	close(r.stopped)
	return nil
}

func (r *role) Wake() { r.woke <- "wake" }

func TestRolesStartWakeStop(t *testing.T) {
	f := newFixture(t, "", oneService)
	r := &role{woke: make(chan string, 1), stopped: make(chan struct{})}
	var committed func(string)
	opts := f.opts()
	opts.Roles = []RoleSpec{{Name: "qmgr", New: func(d RoleDeps) (Role, error) {
		if d.Queue == nil || d.Config == nil || d.Log.Tag() != "postfix/qmgr" {
			t.Errorf("role deps %+v", d)
		}
		return r, nil
	}}}
	opts.Servers = map[string]ServerFactory{"smtpd": func(d ServiceDeps) (ConnServer, error) {
		committed = d.Committed
		return &standIn{}, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	if e := <-f.events; e.Kind != Ready {
		t.Fatalf("event %v", e.Kind)
	}
	committed("4ABC")
	select {
	case <-r.woke:
	case <-time.After(5 * time.Second):
		t.Fatal("role not woken by a commit")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.stopped:
	default:
		t.Fatal("role still running after stop")
	}
}

// TestReloadUnderLoad reloads repeatedly while clients keep connecting:
// every connection is greeted, by one generation or the next, since the
// listener never closes.
func TestReloadUnderLoad(t *testing.T) {
	f := newFixture(t, "smtpd_banner = g0", oneService)
	addr := f.start().Addrs["127.0.0.1:0"][0]
	const clients, reloads = 40, 5
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 5 * time.Millisecond)
			c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "220 g") {
				errs <- fmt.Errorf("client %d: %q %v", i, line, err)
				return
			}
			fmt.Fprintf(c, "QUIT\r\n")
		}()
	}
	for i := 1; i <= reloads; i++ {
		f.writeMain(fmt.Sprintf("smtpd_banner = g%d", i))
		f.doReload(Reloaded)
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Every replaced generation is closed once idle.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < reloads; i++ {
		for !f.srv.get(i).isClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !f.srv.get(i).isClosed() {
			t.Errorf("generation %d not closed", i)
		}
	}
}

func TestReloadIgnoresStartOnlySettings(t *testing.T) {
	f := newFixture(t, "", oneService)
	addr := f.start().Addrs["127.0.0.1:0"][0]
	f.write("main.cf", strings.Replace(mustRead(t, filepath.Join(f.dir, "main.cf")), "inet_interfaces = loopback-only", "inet_interfaces = 127.0.0.1", 1))
	f.doReload(Reloaded)
	log := f.waitLog("to change inet_interfaces, stop and start Postfix")
	if !strings.Contains(log, "warning: service 127.0.0.1:0: ignoring inet_interfaces change") {
		t.Errorf("log:\n%s", log)
	}
	if got := dial(t, addr).line(5 * time.Second); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("after reload: %q", got)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReloadRaisesMaxproc(t *testing.T) {
	f := newFixture(t, "smtpd_banner = one", "127.0.0.1:0 inet n - n - 1 smtpd\n")
	addr := f.start().Addrs["127.0.0.1:0"][0]
	a := dial(t, addr)
	if got := a.line(5 * time.Second); got != "220 one" {
		t.Fatalf("a: %q", got)
	}
	b := dial(t, addr)
	if got := b.line(300 * time.Millisecond); got != "" {
		t.Fatalf("b greeted at the limit: %q", got)
	}
	// The session on the old generation still counts; the new limit of 2
	// leaves room for b, which the new generation serves.
	f.writeMain("smtpd_banner = two")
	f.write("master.cf", "127.0.0.1:0 inet n - n - 2 smtpd\n")
	f.doReload(Reloaded)
	if got := b.line(5 * time.Second); got != "220 two" {
		t.Fatalf("b after maxproc 2: %q", got)
	}
	c := dial(t, addr)
	if got := c.line(300 * time.Millisecond); got != "" {
		t.Fatalf("c greeted with a and b running under maxproc 2: %q", got)
	}
	a.cmd("QUIT")
	if got := c.line(5 * time.Second); got != "220 two" {
		t.Fatalf("c after a left: %q", got)
	}
}

// stubborn ignores cancellation, as a session stuck in a write might.
type stubborn struct{}

func (stubborn) ServeConn(_ context.Context, c net.Conn) {
	fmt.Fprintf(c, "220 stubborn\r\n")
	io.Copy(io.Discard, c) // until the master closes the connection
}

func (stubborn) Close() error { return nil }

func TestStopBoundsStuckSessions(t *testing.T) {
	f := newFixture(t, "", oneService)
	opts := f.opts()
	opts.StopTimeout = 200 * time.Millisecond
	opts.Servers = map[string]ServerFactory{"smtpd": func(ServiceDeps) (ConnServer, error) { return stubborn{}, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	ev := <-f.events
	c := dial(t, ev.Addrs["127.0.0.1:0"][0])
	if got := c.line(5 * time.Second); got != "220 stubborn" {
		t.Fatalf("greeting %q", got)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stop not bounded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stop took %v", d)
	}
	f.waitLog("warning: 1 sessions did not end within 200ms of stop: connections closed")
}
