package smtpdcheck

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"moat/internal/cli"
	"moat/internal/postmap"
	"moat/internal/testutil"
	"moat/internal/testutil/dnsserver"
)

// script is one of Postfix's smtpd_check test scripts with its expected
// output, run as postfix/src/smtpd/Makefile.in runs it.
type script struct {
	name    string // the name expected diffs are filed under
	dir     string // below the postfix-tests directory
	in, ref string
	// fix is the Makefile's sed fix-up of the program's output.
	fix func(string) string
}

// noAddress is smtpd_server's and smtpd_nullmx's sed: the .ref files were
// made where getaddrinfo() words EAI_NONAME as BSD does.
func noAddress(s string) string {
	return strings.ReplaceAll(s, "No address associated with hostname", "hostname nor servname provided, or not known")
}

var ttlField = regexp.MustCompile(`\. [0-9]* IN`)

// anyTTL is smtpd_dns_filter's sed 's/\. [0-9]* IN/. TTL IN/'.
func anyTTL(s string) string { return ttlField.ReplaceAllString(s, ". TTL IN") }

func scripts() []script {
	return []script{
		{name: "smtpd_acl", dir: "smtpd", in: "smtpd_acl.in", ref: "smtpd_acl.ref"},
		{name: "smtpd_addr_valid", dir: "smtpd", in: "smtpd_addr_valid.in", ref: "smtpd_addr_valid.ref"},
		{name: "smtpd_error", dir: "smtpd", in: "smtpd_error.in", ref: "smtpd_error.ref"},
		{name: "smtpd_check", dir: "smtpd", in: "smtpd_check.in", ref: "smtpd_check.ref"},
		{name: "smtpd_check4", dir: "smtpd", in: "smtpd_check.in4", ref: "smtpd_check.ref4"},
		{name: "smtpd_dnswl", dir: "smtpd", in: "smtpd_dnswl.in", ref: "smtpd_dnswl.ref"},
		{name: "smtpd_server", dir: "smtpd", in: "smtpd_server.in", ref: "smtpd_server.ref", fix: noAddress},
		{name: "smtpd_nullmx", dir: "smtpd", in: "smtpd_nullmx.in", ref: "smtpd_nullmx.ref", fix: noAddress},
		{name: "smtpd_dns_filter", dir: "smtpd", in: "smtpd_dns_filter.in", ref: "smtpd_dns_filter.ref", fix: anyTTL},
		{name: "smtpd_check_backup", dir: "smtpd", in: "smtpd_check_backup.in", ref: "smtpd_check_backup.ref"},
		{name: "smtpd_deprecated", dir: "master-3.12/smtpd", in: "smtpd_deprecated.in", ref: "smtpd_deprecated.ref"},
	}
}

// zone reads testdata/porcupine.zone: master-file lines, ";" comments.
func zone(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "porcupine.zone"))
	if err != nil {
		t.Fatal(err)
	}
	var recs []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, ";") {
			recs = append(recs, l)
		}
	}
	return recs
}

// workDir lays out what the scripts name with relative paths:
// ./smtpd_check_access (and its moat postmap index) in the working
// directory, ../dns/*.reg beside it, and makes it the working directory.
func workDir(t *testing.T, accessDir string) {
	t.Helper()
	root := t.TempDir()
	work, dnsDir := filepath.Join(root, "smtpd"), filepath.Join(root, "dns")
	for _, d := range []string{work, dnsDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.ReadFile(filepath.Join(accessDir, "smtpd_check_access"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WriteOld(t, filepath.Join(work, "smtpd_check_access"), src)
	regs, err := filepath.Glob(filepath.Join("testdata", "dns", "*.reg"))
	if err != nil || len(regs) == 0 {
		t.Fatalf("testdata/dns/*.reg: %v", err)
	}
	for _, r := range regs {
		data, err := os.ReadFile(r)
		if err != nil {
			t.Fatal(err)
		}
		testutil.WriteOld(t, filepath.Join(dnsDir, filepath.Base(r)), data)
	}
	testutil.WriteOld(t, filepath.Join(root, "main.cf"), nil)
	t.Chdir(work)
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	if rc := postmap.Main(env, "postmap", []string{"-c", root, "hash:./smtpd_check_access"}); rc != 0 {
		t.Fatalf("postmap hash:./smtpd_check_access: %d %s%s", rc, out.String(), errb.String())
	}
}

// run feeds in through a Runner as smtpd_check's Makefile does and returns
// the merged output.
func run(t *testing.T, dnsAddr string, in []byte) string {
	t.Helper()
	var out bytes.Buffer
	r := New(Options{Out: &out, Echo: true, Overrides: map[string]string{"dns_servers": dnsAddr}})
	err := r.Run(context.Background(), bytes.NewReader(in))
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestPostfixScripts is issue 6's bar: Postfix's own smtpd_check scripts,
// run through moat's restriction code, give the .ref output except for the
// differences listed in expectedDiffs, each with its reason.
func TestPostfixScripts(t *testing.T) {
	base := testutil.PostfixTests(t)
	recs := zone(t)
	var report strings.Builder
	for _, s := range scripts() {
		t.Run(s.name, func(t *testing.T) {
			dir := filepath.Join(base, s.dir)
			in, err := os.ReadFile(filepath.Join(dir, s.in))
			if err != nil {
				t.Fatal(err)
			}
			ref, err := os.ReadFile(filepath.Join(dir, s.ref))
			if err != nil {
				t.Fatal(err)
			}
			srv := dnsserver.Start(t, recs...)
			workDir(t, dir)
			got := run(t, srv.Addr(), in)
			if s.fix != nil {
				got = s.fix(got)
			}
			hunks := diff(lines(string(ref)), lines(got))
			report.WriteString(formatHunks(s.name, hunks))
			checkExpected(t, s.name, hunks)
		})
	}
	if path := os.Getenv("SMTPDCHECK_DIFFS"); path != "" {
		if err := os.WriteFile(path, []byte(report.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// expectedDiff allows lines by which moat's output may differ from a .ref
// file. Line is a regular expression for the whole line with its sign: "-"
// for a .ref line moat does not print, "+" for a line moat prints instead.
// After, when set, is a regular expression the script line before the run
// (">>> command") must match, for lines as common as "-OK". Why says why the
// difference is kept.
type expectedDiff struct {
	File, After, Line, Why string
}

// checkExpected fails the test on every differing line of file that no
// entry of expectedDiffs allows, and on every entry for file that allows
// nothing any more, so the table shrinks as moat catches up.
func checkExpected(t *testing.T, file string, hunks []hunk) {
	t.Helper()
	type rule struct {
		e           expectedDiff
		after, line *regexp.Regexp
		used        bool
	}
	var rules []*rule
	for _, e := range expectedDiffs() {
		if e.File != file {
			continue
		}
		r := &rule{e: e, line: regexp.MustCompile("^(?:" + e.Line + ")$")}
		if e.After != "" {
			r.after = regexp.MustCompile("^>>> (?:" + e.After + ")$")
		}
		rules = append(rules, r)
	}
	for _, h := range hunks {
	lines:
		for _, l := range h.lines {
			for _, r := range rules {
				if r.line.MatchString(l) && (r.after == nil || r.after.MatchString(h.context)) {
					r.used = true
					continue lines
				}
			}
			t.Errorf("unexpected difference after %q:\n%s", h.context, l)
		}
	}
	for _, r := range rules {
		if !r.used {
			t.Errorf("expected difference no longer seen (remove it from expectedDiffs): %+v", r.e)
		}
	}
}

func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// hunk is a run of differing lines ("-ref" or "+got") after the last
// script line both outputs echoed.
type hunk struct {
	context string
	lines   []string
}

// diff compares want (the .ref) with got line by line (longest common
// subsequence) and returns the differing runs.
func diff(want, got []string) []hunk {
	n, m := len(want), len(got)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			switch {
			case want[i] == got[j]:
				lcs[i][j] = lcs[i+1][j+1] + 1
			case lcs[i+1][j] >= lcs[i][j+1]:
				lcs[i][j] = lcs[i+1][j]
			default:
				lcs[i][j] = lcs[i][j+1]
			}
		}
	}
	var hunks []hunk
	var cur *hunk
	context := ""
	add := func(l string) {
		if cur == nil {
			hunks = append(hunks, hunk{context: context})
			cur = &hunks[len(hunks)-1]
		}
		cur.lines = append(cur.lines, l)
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && want[i] == got[j]:
			if strings.HasPrefix(want[i], ">>> ") {
				context = want[i]
			}
			cur = nil
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			add("+" + got[j])
			j++
		default:
			add("-" + want[i])
			i++
		}
	}
	return hunks
}

func formatHunks(file string, hunks []hunk) string {
	var b strings.Builder
	fmt.Fprintf(&b, "==== %s: %d differing runs\n", file, len(hunks))
	for _, h := range hunks {
		fmt.Fprintf(&b, "  after %s\n", h.context)
		for _, l := range h.lines {
			fmt.Fprintf(&b, "    %s\n", l)
		}
	}
	return b.String()
}
