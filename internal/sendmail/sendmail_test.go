package sendmail

import (
	"bufio"
	"bytes"
	"reflect"
	"strings"
	"testing"

	"moat/internal/maildrop"
)

func TestParseArgs(t *testing.T) {
	o, err := parseArgs([]string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"})
	if err != nil || o.fullName != "CronDaemon" || o.dotEnds || o.body != "8BITMIME" || !reflect.DeepEqual(o.recipients, []string{"root"}) {
		t.Fatalf("cron: %+v %v", o, err)
	}
	o, err = parseArgs([]string{"-t", "-oi", "-f", "<a@b>", "-N", "never", "-R", "hdrs", "-V", "id1", "--", "-x@y"})
	if err != nil || !o.extract || o.dotEnds || o.sender != "a@b" || !o.senderGiven || o.notify != "never" || o.ret != "HDRS" || o.envID != "id1" || !reflect.DeepEqual(o.recipients, []string{"-x@y"}) {
		t.Fatalf("%+v %v", o, err)
	}
	// "-o x value" ignores the value too; -L, -h, -X take arguments.
	o, err = parseArgs([]string{"-o", "x", "value", "-L", "label", "-h", "5", "-Xlog", "u"})
	if err != nil || !reflect.DeepEqual(o.recipients, []string{"u"}) {
		t.Fatalf("%+v %v", o, err)
	}
	for args, mode := range map[string]byte{"-bp": modeQueue, "-bi": modeAliases, "-I": modeAliases, "-bs": modeSMTP, "-q": modeFlush, "-bv": modeVerify, "-bd": modeDaemon, "-q30m": modeDeliver} {
		o, err := parseArgs(strings.Fields(args))
		if err != nil || o.mode != mode {
			t.Errorf("%s: mode %c %v", args, o.mode, err)
		}
	}
	if o, _ := parseArgs([]string{"-qIABC"}); o.flushID != "ABC" {
		t.Errorf("-qI: %+v", o)
	}
	for _, bad := range [][]string{{"-bz"}, {"-Q"}, {"-f"}, {"-B", "BINARY"}, {"-qSsite"}} {
		if _, err := parseArgs(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func readAll(t *testing.T, in string, dotEnds bool) (hdr, body string) {
	m := &reader{in: bufio.NewReaderSize(strings.NewReader(in), 16), dotEnds: dotEnds}
	h, err := m.readHeader()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := m.copyBody(&b); err != nil {
		t.Fatal(err)
	}
	return string(h), b.String()
}

func TestReader(t *testing.T) {
	for _, c := range []struct {
		in        string
		dot       bool
		hdr, body string
	}{
		{"From someone Mon\nSubject: x\n\nbody\n", true, "Subject: x\r\n\r\n", "body\r\n"},
		{"Subject: x\r\n\r\nbody\r\n.\r\nafter\r\n", true, "Subject: x\r\n\r\n", "body\r\n"},
		{"Subject: x\n\nline\r\n.\nmore", false, "Subject: x\r\n\r\n", "line\r\r\n.\r\nmore\r\n"},
		{"no header line\nx\n", true, "no header line\r\n", "x\r\n"},
		{"Subject: a very long header line that is longer than the buffer\n folded\n\nb\n", true,
			"Subject: a very long header line that is longer than the buffer\r\n folded\r\n\r\n", "b\r\n"},
		{"", true, "", ""},
	} {
		h, b := readAll(t, c.in, c.dot)
		if h != c.hdr || b != c.body {
			t.Errorf("%q: header %q body %q, want %q %q", c.in, h, b, c.hdr, c.body)
		}
	}
	m := &reader{in: bufio.NewReader(strings.NewReader("Subject: x\n\n" + strings.Repeat("y", 100))), dotEnds: true, limit: 50}
	h, _ := m.readHeader()
	if err := m.copyBody(&bytes.Buffer{}); err != maildrop.ErrTooBig || len(h) == 0 {
		t.Errorf("size limit: %v", err)
	}
}

func TestExtract(t *testing.T) {
	hdr := "To: a, B <b@x>\r\nCc: c\r\n (comment)\r\nBcc: d\r\nSubject: s\r\n\r\n"
	if got := extract([]byte(hdr)); !reflect.DeepEqual(got, []string{"a", "b@x", "c", "d"}) {
		t.Errorf("got %q", got)
	}
	resent := "To: a\r\nResent-To: r\r\nResent-Bcc: s\r\n\r\n"
	if got := extract([]byte(resent)); !reflect.DeepEqual(got, []string{"r", "s"}) {
		t.Errorf("resent: got %q", got)
	}
}

// FuzzReader feeds arbitrary input to the message reader: it must not
// fail on content, and what it writes is CRLF lines only.
func FuzzReader(f *testing.F) {
	for _, s := range []string{"From x\nSubject: a\n\nb\n.\n", "a\r\nb\n\r\n", "\n\n.\n", "To: a,\n b\nBcc: c\n\nx"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, dot bool) {
		m := &reader{in: bufio.NewReaderSize(strings.NewReader(in), 16), dotEnds: dot}
		h, err := m.readHeader()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := m.copyBody(&b); err != nil {
			t.Fatal(err)
		}
		out := string(h) + b.String()
		if out != "" && !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("output %q does not end in CRLF", out)
		}
		if len(out) > 3*len(in)+2 {
			t.Fatalf("output grew: %d from %d", len(out), len(in))
		}
		_ = extract(h)
	})
}

// FuzzParseArgs: no command line makes the option parser fail other
// than with an error.
func FuzzParseArgs(f *testing.F) {
	f.Add("-FCronDaemon -i -B8BITMIME -oem root")
	f.Add("-t -f a -o x y -- z")
	f.Add("-q -qI -bs")
	f.Fuzz(func(t *testing.T, line string) {
		o, err := parseArgs(strings.Fields(line))
		if err == nil && o == nil {
			t.Fatal("nil options without an error")
		}
	})
}

// TestProbe: -bv's stand-in message is Postfix's (sendmail.c enqueue()),
// and an argument cannot smuggle in a header line.
func TestProbe(t *testing.T) {
	got := probe("joe", []string{"a@b", "C <c@d>"})
	want := "From: joe\r\nSubject: probe\r\nTo:\ta@b,\r\n\tC <c@d>\r\n"
	if got != want {
		t.Fatalf("probe = %q, want %q", got, want)
	}
	if got := probe("", []string{"x\r\nBcc: y"}); got != "Subject: probe\r\nTo:\tx  Bcc: y\r\n" {
		t.Fatalf("null sender, CRLF in an argument: %q", got)
	}
}
