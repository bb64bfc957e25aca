package maillog

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"moat/internal/config"
	"moat/internal/testutil"
)

// Differential test against Postfix's own postlog(1): with Postfix down
// and maillog_file set, postlog writes straight to the file, through the
// same msg_logger code every Postfix daemon uses. moat writes the same
// records to a second file of the same configuration; each line must be
// byte-identical, with the time stamp and process ID taken from Postfix's
// line. Deliberate differences are listed with their reason; one more is
// the new file's mode (moat 0640, Postfix 0644, see OpenFile).
func TestPostlogDifferential(t *testing.T) {
	postlog := testutil.PostfixTool(t, "postlog")
	long := strings.Repeat("y", 2100)
	type tc struct {
		sev  Severity
		tag  string // postlog -t; "" means postfix/smtpd
		text string
		// moat, when set, is moat's text where it deliberately differs.
		moat, why string
	}
	cases := []tc{
		{sev: Info, text: "connect from x[192.0.2.1]"},
		{sev: Warning, text: "hostname x does not resolve to address 192.0.2.1"},
		{sev: Error, text: "queue file write error"},
		{sev: Fatal, text: "bad configuration"},
		{sev: Panic, text: "myfree: corrupt arena"},
		{sev: Info, tag: "postfix/submission/smtpd", text: "connect from y[2001:db8::1]"},
		{sev: Info, text: "back\\slash 100%s %d"},
		{sev: Info, text: "cr\rlf\nnl tab\tx esc\x1b[31m del\x7f bell\a"},
		{sev: Info, text: "caf\xc3\xa9 \xe2\x80\xae bidi bad\xff\xc3 end"},
		{sev: Info, text: long},
		{sev: Info, text: strings.Repeat("x", MaxText-1) + "\xc3\xa9",
			moat: strings.Repeat("x", MaxText-1),
			why:  "Postfix cuts at 2000 bytes inside the UTF-8 character and writes a lone lead byte; moat cuts before it and never writes invalid UTF-8"},
		{sev: Info, text: "csi\xc2\x9b31m",
			moat: "csi??31m",
			why:  "Postfix keeps C1 control characters (U+0080-U+009F) in UTF-8 mode; moat replaces them, since terminals may obey U+009B as an escape (CSI)"},
	}
	for _, utf8 := range []bool{true, false} {
		t.Run(fmt.Sprintf("utf8=%v", utf8), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			pfLog, moatLog := filepath.Join(dir, "postfix.log"), filepath.Join(dir, "moat.log")
			yn := map[bool]string{true: "yes", false: "no"}[utf8]
			mainCF := fmt.Sprintf("compatibility_level = 3.6\nmyhostname = ns1.example.com\nmaillog_file = %s\nmaillog_file_prefixes = %s\nsmtputf8_enable = %s\n",
				pfLog, dir, yn)
			if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				tag := c.tag
				if tag == "" {
					tag = "postfix/smtpd"
				}
				prio := map[Severity]string{Info: "info", Warning: "warn", Error: "error", Fatal: "fatal", Panic: "panic"}[c.sev]
				out, err := exec.Command(postlog, "-c", dir, "-t", tag, "-p", prio, c.text).CombinedOutput()
				if err != nil {
					t.Fatalf("postlog: %v\n%s", err, out)
				}
			}
			pfBytes, err := os.ReadFile(pfLog)
			if err != nil {
				t.Fatal(err)
			}
			pfLines := strings.SplitAfter(string(pfBytes), "\n")
			pfLines = pfLines[:len(pfLines)-1]
			if len(pfLines) != len(cases) {
				t.Fatalf("postlog wrote %d lines for %d records:\n%s", len(pfLines), len(cases), pfBytes)
			}

			cfg, err := config.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			var now time.Time
			l, err := FromConfig(cfg.WithOverrides(map[string]string{"maillog_file": moatLog}),
				Setup{Daemon: "smtpd", Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			pidRE := regexp.MustCompile(`^\S+\[(\d+)\]: `)
			for i, c := range cases {
				line := pfLines[i]
				now, err = time.ParseInLocation("Jan 02 15:04:05", line[:15], time.Local)
				if err != nil {
					t.Fatalf("time stamp of %q: %v", line, err)
				}
				m := pidRE.FindStringSubmatch(line[20:])
				if m == nil {
					t.Fatalf("no pid in %q", line)
				}
				pid, _ := strconv.Atoi(m[1])
				lg := l.With("smtpd", pid)
				if c.tag != "" {
					lg = lg.WithName(strings.TrimSuffix(c.tag, "/smtpd"))
				}
				lg.c.enqueue(lg.record(c.sev, "%s", []any{c.text}))
				if err := l.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			moatBytes, err := os.ReadFile(moatLog)
			if err != nil {
				t.Fatal(err)
			}
			moatLines := strings.SplitAfter(string(moatBytes), "\n")
			moatLines = moatLines[:len(moatLines)-1]
			if len(moatLines) != len(cases) {
				t.Fatalf("moat wrote %d lines for %d records", len(moatLines), len(cases))
			}
			for i, c := range cases {
				want := pfLines[i]
				if c.moat != "" && utf8 {
					// The deliberate difference: moat's text replaces Postfix's.
					head := want[:strings.Index(want, "]: ")+3]
					if c.sev != Info {
						head += c.sev.String() + ": "
					}
					if want == head+c.moat+"\n" {
						t.Errorf("case %d: expected a difference (%s) but Postfix agrees now", i, c.why)
					}
					want = head + c.moat + "\n"
				}
				if moatLines[i] != want {
					t.Errorf("case %d:\npostfix %q\nmoat    %q", i, pfLines[i], moatLines[i])
				}
			}
		})
	}
}
