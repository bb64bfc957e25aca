package confedit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"moat/internal/testutil"
)

// editCase is one differential case: the same edit applied by Debian's
// postconf and by this package to copies of the same main.cf.
type editCase struct {
	name string
	in   string
	opt  string // "-e", "-X" or "-#"
	args []string
	// unordered is the number of appended lines to compare as a set:
	// Postfix appends several new parameters in the order of its hash
	// table, which is randomised per run; moat keeps argument order.
	unordered int
	// moat, when set, is moat's deliberately different result and why is
	// the reason; Postfix's output is then checked to differ.
	moat, why string
}

const sample = `# Global Postfix configuration file.
#
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no

# TLS parameters
smtpd_tls_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem
smtpd_tls_key_file=/etc/ssl/private/ssl-cert-snakeoil.key
smtpd_tls_security_level=may

smtpd_relay_restrictions = permit_mynetworks
	permit_sasl_authenticated
	defer_unauth_destination
myhostname = mail.example.org
alias_maps = hash:/etc/aliases
mydestination = $myhostname, example.org,
  # localhost is ours too
  localhost.example.org,

  localhost
relayhost =
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128
#mailbox_size_limit = 0
recipient_delimiter = +
inet_interfaces = all
`

func editCases(t *testing.T) []editCase {
	// Debian's main.cf.dist: long, commented, with whitespace-only lines
	// and a multi-line debugger_command.
	distData, err := os.ReadFile(filepath.Join("testdata", "main.cf.dist"))
	if err != nil {
		t.Fatal(err)
	}
	dist := string(distData)
	return []editCase{
		{name: "dist: replace multi-line value", in: dist, opt: "-e", args: []string{"debugger_command=gdb"}},
		{name: "dist: set commented-out and existing", in: dist, opt: "-e",
			args: []string{"myhostname=mx.example.org", "mynetworks=10.0.0.0/8"}},
		{name: "dist: remove and comment", in: dist, opt: "-X", args: []string{"sendmail_path", "debugger_command", "inet_protocols"}},
		{name: "dist: comment multi-line", in: dist, opt: "-#", args: []string{"debugger_command", "smtpd_banner"}},
		{name: "replace simple", in: sample, opt: "-e", args: []string{"biff=yes"}},
		{name: "replace no spaces", in: sample, opt: "-e", args: []string{"smtpd_tls_security_level=encrypt"}},
		{name: "replace with tab continuations", in: sample, opt: "-e",
			args: []string{"smtpd_relay_restrictions=permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"}},
		{name: "replace continuation with comment and blank inside", in: sample, opt: "-e", args: []string{"mydestination=$myhostname"}},
		{name: "append", in: sample, opt: "-e", args: []string{"message_size_limit=10240000"}},
		{name: "value with $name", in: sample, opt: "-e", args: []string{"smtp_helo_name=$myhostname", "myorigin = ${mydomain}"}, unordered: 2},
		{name: "spaces around =", in: sample, opt: "-e", args: []string{"  biff   =   yes  ", "relayhost\t=\t[smtp.example.net]:587"}},
		{name: "empty value", in: sample, opt: "-e", args: []string{"smtpd_banner="}},
		{name: "commented parameter is not replaced", in: sample, opt: "-e", args: []string{"mailbox_size_limit=51200000"}},
		{name: "several at once", in: sample, opt: "-e",
			args: []string{"biff=yes", "new_one=1", "myhostname=mx.example.org", "new_two=2", "inet_interfaces=loopback-only"}, unordered: 2},
		{name: "same name twice", in: sample, opt: "-e", args: []string{"biff=yes", "biff=no"}},
		{name: "duplicate definitions", in: "a = 1\nb = 2\na = 3\n  more\n", opt: "-e", args: []string{"a=4"}},
		{name: "CRLF lines", in: "a = 1\r\n  x\r\nb = 2\r\n", opt: "-e", args: []string{"a=2"}},
		{name: "empty file", in: "", opt: "-e", args: []string{"a=1"}},
		{name: "last line with continuation, no newline", in: "a = 1\n  x", opt: "-e", args: []string{"a=2"}},
		{name: "odd names", in: "a.b = 1\nx y = 2\n", opt: "-e", args: []string{"a.b=2", "x=3"}},
		{name: "append after missing final newline", in: "a = 1", opt: "-e", args: []string{"c=3"},
			moat: "a = 1\nc = 3\n",
			why:  "Postfix appends right after a last line without newline, producing \"a = 1c = 3\"; moat ends the line first"},

		{name: "remove", in: sample, opt: "-X", args: []string{"biff"}},
		{name: "remove with continuations", in: sample, opt: "-X", args: []string{"mydestination", "smtpd_relay_restrictions"}},
		{name: "remove missing name", in: sample, opt: "-X", args: []string{"no_such_parameter"}},
		{name: "remove commented name", in: sample, opt: "-X", args: []string{"mailbox_size_limit"}},
		{name: "remove last line without newline", in: "a = 1\nb = 2", opt: "-X", args: []string{"b"}},

		{name: "comment out", in: sample, opt: "-#", args: []string{"relayhost", "mydestination"}},
		{name: "comment out already commented", in: sample, opt: "-#", args: []string{"mailbox_size_limit"}},
		{name: "comment out absent", in: sample, opt: "-#", args: []string{"absent_parameter"}},
		{name: "comment out without newline", in: "a = 1\nb = 2\n  x", opt: "-#", args: []string{"b"}},
	}
}

// runPostconf applies an edit with Debian's postconf in a fresh directory.
func runPostconf(t *testing.T, tool, in, opt string, args []string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	main := filepath.Join(dir, "main.cf")
	testutil.WriteOld(t, main, []byte(in))
	testutil.WriteOld(t, filepath.Join(dir, "master.cf"), nil)
	cmd := exec.Command(tool, append([]string{"-c", dir, opt}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stderr.String(), err
	}
	out, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), nil
}

func runMoat(t *testing.T, in, opt string, args []string) string {
	t.Helper()
	main := filepath.Join(t.TempDir(), "main.cf")
	if err := os.WriteFile(main, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	switch opt {
	case "-e":
		err = Set(main, args)
	case "-X":
		err = Remove(main, args)
	case "-#":
		err = Comment(main, args)
	}
	if err != nil {
		t.Fatalf("%s %q: %v", opt, args, err)
	}
	out, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// sortTail sorts the last n lines so that appended parameters compare as a
// set.
func sortTail(s string, n int) string {
	if n == 0 {
		return s
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if n > len(lines) {
		n = len(lines)
	}
	tail := lines[len(lines)-n:]
	sort.Strings(tail)
	return strings.Join(lines, "")
}

func TestDifferential(t *testing.T) {
	tool := testutil.PostfixTool(t, "postconf")
	cases := editCases(t)
	if len(cases) < 15 {
		t.Fatalf("want at least 15 differential cases, have %d", len(cases))
	}
	for _, c := range cases {
		want, err := runPostconf(t, tool, c.in, c.opt, c.args)
		if err != nil {
			t.Errorf("%s: postconf %s %q: %v\n%s", c.name, c.opt, c.args, err, want)
			continue
		}
		got := runMoat(t, c.in, c.opt, c.args)
		if c.moat != "" {
			if got != c.moat {
				t.Errorf("%s: moat gave %q, want %q", c.name, got, c.moat)
			}
			if want == c.moat {
				t.Errorf("%s: Postfix now agrees with moat; drop the listed difference (%s)", c.name, c.why)
			}
			continue
		}
		if sortTail(got, c.unordered) != sortTail(want, c.unordered) {
			t.Errorf("%s: postconf %s %q\n--- postconf\n%s--- moat\n%s", c.name, c.opt, c.args, want, got)
		}
	}
}

// TestDifferentialErrors checks that arguments Postfix refuses are refused
// and leave main.cf untouched.
func TestDifferentialErrors(t *testing.T) {
	tool := testutil.PostfixTool(t, "postconf")
	cases := []struct {
		opt  string
		args []string
	}{
		{"-e", []string{"novalue"}},
		{"-e", []string{"=value"}},
		{"-e", []string{"two words=value"}},
		{"-e", []string{"a=1\nb=2"}},
		{"-e", []string{"good=1", "bad"}},
		{"-X", []string{"a=1"}},
		{"-X", []string{"  "}},
		{"-#", []string{"a=1"}},
		{"-#", []string{"a\nb"}},
	}
	const in = "a = 1\n"
	// Postfix sleeps a second after a fatal error: run them all at once.
	accepted := make([]error, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		dir := t.TempDir()
		testutil.WriteOld(t, filepath.Join(dir, "main.cf"), []byte(in))
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(tool, append([]string{"-c", dir, c.opt}, c.args...)...).CombinedOutput()
			if err == nil {
				accepted[i] = fmt.Errorf("postconf %s %q accepted it: %s", c.opt, c.args, out)
			}
		}()
	}
	wg.Wait()
	for i, c := range cases {
		if accepted[i] != nil {
			t.Error(accepted[i])
		}
		main := filepath.Join(t.TempDir(), "main.cf")
		if err := os.WriteFile(main, []byte(in), 0o644); err != nil {
			t.Fatal(err)
		}
		var err error
		switch c.opt {
		case "-e":
			err = Set(main, c.args)
		case "-X":
			err = Remove(main, c.args)
		default:
			err = Comment(main, c.args)
		}
		if err == nil {
			t.Errorf("%s %q: accepted", c.opt, c.args)
		}
		if out, _ := os.ReadFile(main); string(out) != in {
			t.Errorf("%s %q: file changed to %q", c.opt, c.args, out)
		}
	}
}
