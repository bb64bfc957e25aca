package postconf

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"moat/internal/cli"
	"moat/internal/config"
	"moat/internal/testutil"
)

// runMoat runs moat's postconf in-process.
func runMoat(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	rc := Main(env, "postconf", args)
	pidWord := regexp.MustCompile(`\b` + strconv.Itoa(os.Getpid()) + `\b`)
	return pidWord.ReplaceAllString(out.String(), "PID"), errb.String(), rc
}

// runPostfix runs Debian's postconf with MAIL_CONFIG unset.
func runPostfix(t *testing.T, tool string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Args[0] = "postconf"
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "MAIL_CONFIG=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.ProcessState != nil {
		pidWord := regexp.MustCompile(`\b` + strconv.Itoa(cmd.ProcessState.Pid()) + `\b`)
		out = *bytes.NewBufferString(pidWord.ReplaceAllString(out.String(), "PID"))
	}
	rc := 0
	if ee, ok := err.(*exec.ExitError); ok {
		rc = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return out.String(), errb.String(), rc
}

// copyConfig copies a corpus directory into a fresh temporary directory so
// both programs see the same path.
func copyConfig(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		testutil.WriteOld(t, filepath.Join(dst, e.Name()), data)
	}
	return dst
}

// records splits postconf output into logical entries (a folded entry's
// continuation lines start with whitespace).
func records(out string) []string {
	var recs []string
	for _, line := range strings.SplitAfter(out, "\n") {
		if line == "" {
			continue
		}
		if len(recs) > 0 && (line[0] == ' ' || line[0] == '\t') {
			recs[len(recs)-1] += line
			continue
		}
		if name, _, ok := strings.Cut(line, " ="); ok && config.IsMoatParam(name) {
			continue // Postfix lacks moat's own parameters
		}
		recs = append(recs, line)
	}
	return recs
}

var pidLine = regexp.MustCompile(`(?m)^(process_id = )[0-9]+$`)

// safer decides whether a parameter's printed value may differ from
// Postfix's because of moat's safer defaults (config.SaferDefaults): the
// parameter is one of them and main.cf leaves it unset, or (with -x, or for
// the computed mynetworks) its value depends on such a parameter.
type safer struct {
	c      *config.Config
	useMCF bool // main.cf values count (false under -d)
	memo   map[string]bool
}

func (s *safer) set(name string) bool {
	if !s.useMCF {
		return false
	}
	if _, ok := s.c.Entry(name); ok {
		return true
	}
	return name == "config_directory"
}

func (s *safer) direct(name string) bool {
	if s.set(name) {
		return false
	}
	if config.IsSaferDefault(name) {
		return true
	}
	// mynetworks is computed from mynetworks_style, whose default follows
	// compatibility_level.
	return name == "mynetworks" && s.expanded("mynetworks_style")
}

func (s *safer) expanded(name string) bool {
	if v, ok := s.memo[name]; ok {
		return v
	}
	s.memo[name] = false
	res := s.direct(name)
	if !res {
		var raw string
		if s.useMCF {
			raw, _ = s.c.Raw(name)
		} else {
			raw, _ = s.c.Default(name)
		}
		config.References(raw, func(r string) {
			if s.expanded(r) {
				res = true
			}
		})
	}
	s.memo[name] = res
	return res
}

// uniqueLines returns the distinct lines of stderr: Postfix's postconf
// reads main.cf several times and repeats its warnings in hash order, moat
// prints each once.
func uniqueLines(s string) []string {
	m := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			m[l] = true
		}
	}
	var out []string
	for l := range m {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// moatOnly are diagnostics moat adds on purpose (obsolete parameters and
// restrictions, bad values), which Postfix's postconf does not check.
var moatOnly = regexp.MustCompile(`is obsolete: use |: bad value "`)

func compareRun(t *testing.T, tool, dir string, args []string) {
	t.Helper()
	full := append([]string{"-c", dir}, args...)
	pout, perr, prc := runPostfix(t, tool, full...)
	mout, merr, mrc := runMoat(full...)
	if prc != mrc {
		t.Errorf("postconf %v: exit %d, moat %d (stderr %q / %q)", args, prc, mrc, perr, merr)
	}
	pout = pidLine.ReplaceAllString(pout, "${1}PID")
	mout = pidLine.ReplaceAllString(mout, "${1}PID")
	defaults := false
	var hnames []string
	noName := false
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			defaults = defaults || strings.Contains(a, "d")
			noName = noName || strings.Contains(a, "h")
		} else {
			hnames = append(hnames, a)
		}
	}
	expand := strings.Contains(strings.Join(args, " "), "x")
	var c *config.Config
	if defaults {
		c = config.Empty(dir)
	} else if cc, err := config.Open(dir); err == nil {
		c = cc
	} else {
		c = config.Empty(dir)
	}
	s := &safer{c: c, useMCF: !defaults, memo: map[string]bool{}}
	pr, mr := records(pout), records(mout)
	if len(pr) != len(mr) {
		t.Errorf("postconf %v: %d entries, moat %d", args, len(pr), len(mr))
	}
	for i := 0; i < len(pr) && i < len(mr); i++ {
		if pr[i] == mr[i] {
			continue
		}
		var name string
		if noName {
			if i < len(hnames) {
				name = hnames[i]
			}
		} else {
			name, _, _ = strings.Cut(pr[i], " =")
			if mname, _, _ := strings.Cut(mr[i], " ="); mname != name {
				t.Errorf("postconf %v: entry %d is %q, moat %q", args, i, name, mname)
				continue
			}
		}
		allowed := s.direct(name) || expand && s.expanded(name)
		if !allowed {
			t.Errorf("postconf %v: differs:\npostfix: %q\n   moat: %q", args, pr[i], mr[i])
		}
	}
	pl, ml := uniqueLines(perr), uniqueLines(merr)
	// Postfix's postconf reads main.cf twice, the second time over the
	// first pass's values, so for a repeated name it also warns backwards
	// ("line 1: overriding earlier entry" naming the later value); moat
	// prints only the forward warning.
	if strings.Contains(strings.Join(ml, "\n"), "overriding earlier entry") {
		var keep []string
		mset := map[string]bool{}
		for _, l := range ml {
			mset[l] = true
		}
		for _, l := range pl {
			if strings.Contains(l, "overriding earlier entry") && !mset[l] {
				continue
			}
			keep = append(keep, l)
		}
		pl = keep
	}
	var ml2 []string
	for _, l := range ml {
		if !moatOnly.MatchString(l) {
			ml2 = append(ml2, l)
		}
	}
	if strings.Join(pl, "\n") != strings.Join(ml2, "\n") {
		t.Errorf("postconf %v: stderr differs:\npostfix: %q\n   moat: %q", args, pl, ml2)
	}
}

// TestDifferential runs Debian's postconf and moat's on every configuration
// in testdata/postconf with the same flags and compares the output entry by
// entry. Allowed differences: the safer defaults (config.SaferDefaults)
// and what derives from them; process_id (each process's own); and stderr
// is compared as a set of distinct lines, without moat's extra obsolete /
// bad-value diagnostics.
func TestDifferential(t *testing.T) {
	tool := testutil.PostfixTool(t, "postconf")
	root := filepath.Join(testutil.RepoRoot(t), "testdata", "postconf")
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) < 15 {
		t.Fatalf("corpus has %d configurations, want at least 15", len(ents))
	}
	modes := [][]string{
		nil,
		{"-n"},
		{"-d"},
		{"-x"},
		{"-nf"},
		{"-h", "myhostname"},
		{"myhostname", "mydomain", "smtpd_banner", "relay_domains", "mynetworks_style", "mynetworks", "config_directory"},
		{"-x", "myhostname", "mydomain", "smtpd_banner", "relay_domains", "mydestination"},
		{"no_such_parameter", "myhostname", "also_unknown"},
		{"-n", "myhostname", "smtpd_banner"},
		{"-d", "smtpd_banner", "mynetworks_style", "no_such_parameter"},
		{"-o", "myhostname=o.example", "-n"},
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		t.Run(e.Name(), func(t *testing.T) {
			t.Parallel()
			dir := copyConfig(t, filepath.Join(root, e.Name()))
			for _, m := range modes {
				compareRun(t, tool, dir, m)
			}
		})
	}
}

// TestDifferentialMissingMainCF compares the fatal error for a directory
// without main.cf.
func TestDifferentialMissingMainCF(t *testing.T) {
	tool := testutil.PostfixTool(t, "postconf")
	dir := filepath.Join(t.TempDir(), "nonexistent")
	_, perr, prc := runPostfix(t, tool, "-c", dir, "myhostname")
	_, merr, mrc := runMoat("-c", dir, "myhostname")
	if perr != merr || prc != mrc {
		t.Errorf("postfix %d %q, moat %d %q", prc, perr, mrc, merr)
	}
}

// TestDifferentialMissingMasterCF compares -M and -P without master.cf.
func TestDifferentialMissingMasterCF(t *testing.T) {
	tool := testutil.PostfixTool(t, "postconf")
	dir := t.TempDir()
	testutil.WriteOld(t, filepath.Join(dir, "main.cf"), nil)
	for _, flag := range []string{"-M", "-P", "-F"} {
		pout, perr, prc := runPostfix(t, tool, "-c", dir, flag)
		mout, merr, mrc := runMoat("-c", dir, flag)
		if pout != mout || perr != merr || prc != mrc {
			t.Errorf("%s: postfix %d %q %q, moat %d %q %q", flag, prc, pout, perr, mrc, mout, merr)
		}
	}
}
