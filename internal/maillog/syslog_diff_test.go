package maillog

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/internal/testutil"
)

// Differential test of the syslog datagram: Postfix's postlog(1), logging
// through glibc's syslog(3), and moat's SyslogMessage must produce the same
// bytes. glibc always writes to /dev/log, so postlog runs in a private
// mount namespace (unshare -m, root only) whose /dev is a fresh tmpfs with
// /dev/log a symbolic link to the test's own socket; the host's /dev is
// untouched. Skipped where that is not possible.
func TestSyslogDifferential(t *testing.T) {
	postlog := testutil.PostfixTool(t, "postlog")
	unshare, err := exec.LookPath("unshare")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare(1) to give postlog a private /dev/log")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"),
		[]byte("compatibility_level = 3.6\nmyhostname = ns1.example.com\nsyslog_facility = local3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		sev  Severity
		tag  string
		text string
	}{
		{Info, "postfix/smtpd", "connect from x[192.0.2.1]"},
		{Warning, "postfix/smtpd", "unknown[192.0.2.66]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"},
		{Error, "postfix/cleanup", "queue file write error"},
		{Fatal, "postfix/submission/smtpd", "bad configuration"},
		{Panic, "postfix/qmgr", "corrupt"},
		{Info, "postfix/smtpd", "caf\xc3\xa9 tab\tx cr\rlf\nx esc\x1b del\x7f"},
		{Info, "postfix/smtpd", strings.Repeat("z", 2100)},
	}
	prio := map[Severity]string{Info: "info", Warning: "warn", Error: "error", Fatal: "fatal", Panic: "panic"}
	args := []string{"-m", "sh", "-c", fmt.Sprintf(`set -e
mount --make-rprivate /
mkdir -p %[1]s/olddev
mount --bind /dev %[1]s/olddev
mount -t tmpfs none /dev
touch /dev/null
mount --bind %[1]s/olddev/null /dev/null
ln -s %[1]s/log /dev/log
while [ $# -gt 0 ]; do %[2]s -c %[1]s -t "$1" -p "$2" "$3"; shift 3; done`, dir, postlog), "sh"}
	for _, c := range cases {
		args = append(args, c.tag, prio[c.sev], c.text)
	}
	if out, err := exec.Command(unshare, args...).CombinedOutput(); err != nil {
		t.Skipf("cannot run postlog in a private mount namespace: %v\n%s", err, out)
	}
	head := regexp.MustCompile(`^<\d+>([A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d) \S+\[(\d+)\]: `)
	buf := make([]byte, 8192)
	for i, c := range cases {
		ln.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		got := string(buf[:n])
		m := head.FindStringSubmatch(got)
		if m == nil {
			t.Fatalf("case %d: unexpected datagram %q", i, got)
		}
		ts, err := time.ParseInLocation("Jan _2 15:04:05", m[1], time.Local)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(m[2])
		r := Record{Time: ts, Severity: c.sev, Tag: c.tag, PID: pid, Text: truncate(Printable(c.text, true), MaxText)}
		if want := string(SyslogMessage(&r, 19)); got != want {
			t.Errorf("case %d:\npostfix %q\nmoat    %q", i, got, want)
		}
	}
}
