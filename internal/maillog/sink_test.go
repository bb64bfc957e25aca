package maillog

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"moat/internal/config"
)

func rec(sev Severity, text string) *Record {
	return &Record{
		Time:     time.Date(2026, time.July, 3, 9, 5, 7, 0, time.UTC),
		Severity: sev, Tag: "postfix/smtpd", PID: 4516, Text: text,
	}
}

// The maillog_file line: zero-padded day (strftime %d, as Postfix's
// msg_logger writes it), first host label, tag[pid], severity word.
func TestFileLine(t *testing.T) {
	for _, tc := range []struct {
		sev  Severity
		want string
	}{
		{Info, "Jul 03 09:05:07 ns1 postfix/smtpd[4516]: text\n"},
		{Warning, "Jul 03 09:05:07 ns1 postfix/smtpd[4516]: warning: text\n"},
		{Error, "Jul 03 09:05:07 ns1 postfix/smtpd[4516]: error: text\n"},
		{Fatal, "Jul 03 09:05:07 ns1 postfix/smtpd[4516]: fatal: text\n"},
		{Panic, "Jul 03 09:05:07 ns1 postfix/smtpd[4516]: panic: text\n"},
	} {
		if got := string(FileLine(rec(tc.sev, "text"), Hostname("ns1.example.com"))); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

// The syslog datagram, as glibc's syslog(3) sends it: <PRI>, space-padded
// day, no host name.
func TestSyslogMessage(t *testing.T) {
	for _, tc := range []struct {
		sev  Severity
		fac  int
		want string
	}{
		{Info, 2, "<22>Jul  3 09:05:07 postfix/smtpd[4516]: text"},
		{Warning, 2, "<20>Jul  3 09:05:07 postfix/smtpd[4516]: warning: text"},
		{Error, 2, "<19>Jul  3 09:05:07 postfix/smtpd[4516]: error: text"},
		{Fatal, 2, "<18>Jul  3 09:05:07 postfix/smtpd[4516]: fatal: text"},
		{Panic, 16, "<130>Jul  3 09:05:07 postfix/smtpd[4516]: panic: text"},
	} {
		if got := string(SyslogMessage(rec(tc.sev, "text"), tc.fac)); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestFacility(t *testing.T) {
	for name, want := range map[string]int{"mail": 2, "local0": 16, "local7": 23, "daemon": 3, "user": 1, "authpriv": 10} {
		if got, err := Facility(name); err != nil || got != want {
			t.Errorf("Facility(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	for _, bad := range []string{"", "MAIL", "local8", "mail2", "local"} {
		if _, err := Facility(bad); err == nil {
			t.Errorf("Facility(%q) accepted", bad)
		}
	}
}

func cfgWith(t *testing.T, kv map[string]string) *config.Config {
	t.Helper()
	base := map[string]string{"myhostname": "ns1.example.com", "syslog_name": "postfix"}
	for k, v := range kv {
		base[k] = v
	}
	return config.Empty(t.TempDir()).WithOverrides(base)
}

func fixedLocal() time.Time {
	return time.Date(2026, time.July, 3, 9, 5, 7, 0, time.Local)
}

// A syslog socket of the test's own: the logger must send one datagram
// per record with the facility from syslog_facility.
func TestSyslogSink(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l, err := FromConfig(cfgWith(t, map[string]string{"syslog_facility": "local3"}),
		Setup{Daemon: "smtpd", PID: 4516, SyslogPath: sock, Now: fixedLocal})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("connect from x[192.0.2.1]")
	l.Warning("bad\r\nline")
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"<158>Jul  3 09:05:07 postfix/smtpd[4516]: connect from x[192.0.2.1]",
		"<156>Jul  3 09:05:07 postfix/smtpd[4516]: warning: bad??line",
	}
	buf := make([]byte, 4096)
	for _, w := range want {
		ln.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != w {
			t.Errorf("datagram %q, want %q", got, w)
		}
	}
}

// A syslog daemon listening on a stream socket gets NUL-terminated
// records, as glibc sends them.
func TestSyslogStream(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 4096)
		var all []byte
		for {
			n, err := c.Read(b)
			all = append(all, b[:n]...)
			if err != nil || strings.Count(string(all), "\x00") == 2 {
				break
			}
		}
		got <- string(all)
	}()
	s, err := DialSyslog(sock, 2)
	if err != nil {
		t.Fatal(err)
	}
	s.Write(rec(Info, "one"))
	s.Write(rec(Info, "two"))
	s.Close()
	want := "<22>Jul  3 09:05:07 postfix/smtpd[4516]: one\x00<22>Jul  3 09:05:07 postfix/smtpd[4516]: two\x00"
	if g := <-got; g != want {
		t.Errorf("got %q, want %q", g, want)
	}
}

// Without a syslog socket, records go to standard error (tested through
// the exported pieces) and the logger says why in a warning.
func TestSyslogAbsentFallsBack(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nolog")
	if _, err := DialSyslog(missing, 2); err == nil {
		t.Fatal("dial of a missing socket succeeded")
	}
	l, err := FromConfig(cfgWith(t, nil), Setup{Daemon: "smtpd", SyslogPath: missing})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	if _, ok := l.c.sink.(*WriterSink); !ok {
		t.Errorf("sink is %T, want the standard error sink", l.c.sink)
	}
}

// maillog_file: exact lines, one per record, and a rename plus Reopen (what
// logrotate does) continues in a new file.
func TestFileSinkAndReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "maillog")
	cfg := cfgWith(t, map[string]string{"maillog_file": path, "maillog_file_prefixes": dir})
	l, err := FromConfig(cfg, Setup{Daemon: "smtpd", PID: 4516, Now: fixedLocal})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("connect from x[192.0.2.1]")
	flush(t, l)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Info("still the old file")
	if err := l.Reopen(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.Error("new file")
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	check := func(p, want string) {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s:\n%q\nwant\n%q", p, b, want)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm()&^0o640 != 0 {
			t.Errorf("%s mode %v, want at most 0640", p, fi.Mode().Perm())
		}
	}
	check(path+".1", "Jul 03 09:05:07 ns1 postfix/smtpd[4516]: connect from x[192.0.2.1]\n"+
		"Jul 03 09:05:07 ns1 postfix/smtpd[4516]: still the old file\n")
	check(path, "Jul 03 09:05:07 ns1 postfix/smtpd[4516]: error: new file\n")
}

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "maillog")
	cfg := cfgWith(t, map[string]string{"maillog_file": path, "maillog_file_prefixes": dir})
	l, err := FromConfig(cfg, Setup{Daemon: "postlogd", PID: 9, Now: fixedLocal})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	l.Info("before")
	now := time.Date(2026, time.November, 22, 17, 4, 5, 0, time.UTC)
	got, err := l.Rotate(context.Background(), cfg.Get("maillog_file_rotate_suffix"), now)
	if err != nil {
		t.Fatal(err)
	}
	if want := path + ".20261122-170405"; got != want {
		t.Errorf("rotated to %s, want %s", got, want)
	}
	if _, err := l.Rotate(context.Background(), "%Y%m%d-%H%M%S", now); err != nil {
		// The fresh file was renamed to the same name: refused, not clobbered.
		if !strings.Contains(err.Error(), "already exists") {
			t.Errorf("second rotate: %v", err)
		}
	} else {
		t.Error("second rotate to the same name succeeded")
	}
	l.Info("after")
	flush(t, l)
	b, _ := os.ReadFile(got)
	if !strings.HasSuffix(string(b), ": before\n") {
		t.Errorf("rotated file holds %q", b)
	}
	b, _ = os.ReadFile(path)
	if !strings.HasSuffix(string(b), ": after\n") {
		t.Errorf("new file holds %q", b)
	}
}

func TestMaillogFilePrefixes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		file string
		ok   bool
	}{
		{filepath.Join(dir, "maillog"), true},
		{"/etc/passwd", false},
		{dir + "/../escape", false},
		{"/dev/stdout", true},
	} {
		cfg := cfgWith(t, map[string]string{"maillog_file": tc.file, "maillog_file_prefixes": dir + ", /dev/stdout"})
		l, err := FromConfig(cfg, Setup{Daemon: "smtpd"})
		if (err == nil) != tc.ok {
			t.Errorf("maillog_file %s: err %v, want ok=%v", tc.file, err, tc.ok)
		}
		if l != nil {
			l.Close(context.Background())
		}
	}
}

// A symbolic link in place of the log file is refused, so whoever can
// write the log directory cannot aim moat's writes at another file.
func TestFileSinkRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "maillog")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(link, "mx"); err == nil {
		t.Error("OpenFile followed a symbolic link")
	}
}

func TestHostname(t *testing.T) {
	if got := Hostname("mx1.example.com"); got != "mx1" {
		t.Errorf("got %q", got)
	}
	if got := Hostname(""); got == "" || strings.Contains(got, ".") {
		t.Errorf("system host name %q", got)
	}
}
