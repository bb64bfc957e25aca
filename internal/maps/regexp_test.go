package maps

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/testutil"
)

// dictOpenRead reproduces Postfix's util/dict_open test driver in its
// "read" mode for spec (type:name, opened from the current directory):
// the open-time warnings, the owner line, then for each "get KEY" input
// line the echoed command and "KEY=VALUE" or "KEY: not found".
func dictOpenRead(t *testing.T, spec string, input string) string {
	t.Helper()
	var b strings.Builder
	opts := DefaultOptions()
	opts.Warn = func(m string) { b.WriteString("./dict_open: warning: " + m + "\n") }
	tab, err := Open(spec, opts)
	if err != nil {
		t.Fatalf("open %s: %v", spec, err)
	}
	defer tab.Close()
	// The vectors were made in an unprivileged build tree, so the table
	// was owned by the user running the test (sed turns the uid into USER).
	b.WriteString("owner=untrusted (uid=USER)\n")
	sc := bufio.NewScanner(strings.NewReader(input))
	for sc.Scan() {
		line := sc.Text()
		b.WriteString("> " + line + "\n")
		cmd, key, _ := strings.Cut(line, " ")
		if cmd != "get" {
			t.Fatalf("unsupported dict_open command %q", line)
		}
		v, found, err := tab.Lookup(key)
		switch {
		case err != nil:
			b.WriteString(key + ": error\n")
		case found:
			b.WriteString(key + "=" + v + "\n")
		default:
			b.WriteString(key + ": not found\n")
		}
	}
	return b.String()
}

// runVector runs util/<base>.{map,in} through dictOpenRead and compares
// with <base>.ref line by line. allowed maps a .ref line to the line moat
// prints instead, for each deliberate difference (the test's reason is
// given where the map is built).
func runVector(t *testing.T, typ, base string, allowed map[string]string) {
	dir := filepath.Join(testutil.PostfixTests(t), "util")
	tmp := t.TempDir()
	for _, ext := range []string{".map"} {
		data, err := os.ReadFile(filepath.Join(dir, base+ext))
		if err != nil {
			t.Fatal(err)
		}
		// The shared vectors may have any owner and mode; the copy is
		// ours and 0644 so the trust check accepts it.
		if err := os.WriteFile(filepath.Join(tmp, base+ext), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in, err := os.ReadFile(filepath.Join(dir, base+".in"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := os.ReadFile(filepath.Join(dir, base+".ref"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(tmp)
	got := dictOpenRead(t, typ+":"+base+".map", string(in))
	want := strings.Split(strings.TrimSuffix(string(ref), "\n"), "\n")
	for i, l := range want {
		if alt, ok := allowed[l]; ok {
			want[i] = alt
		}
	}
	gotLines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if strings.Join(gotLines, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s differs from %s.ref\n got:\n%s\nwant:\n%s", typ, base, got, strings.Join(want, "\n"))
	}
}

func TestRegexpPostfixVector(t *testing.T) {
	runVector(t, "regexp", "dict_regexp", nil)
}

func parseRE(t *testing.T, src string) *regexpTable { return parseDialect(t, posixDialect{}, src) }

// parseDialect parses a regexp: or pcre: table source, failing the test on
// an error.
func parseDialect(t *testing.T, d reDialect, src string) *regexpTable {
	t.Helper()
	tab, err := parseRegexpSource(d, "t.map", []byte(src))
	if err != nil {
		t.Fatalf("parse %q: %v", src, err)
	}
	return tab
}

func TestRegexpLookups(t *testing.T) {
	tab := parseRE(t, strings.Join([]string{
		`/^(a)(b)$/ x$1-${2}-$$-$(1)`,
		`/^[\.]+$/ bracket-backslash`,
		`/^k{2}{3}$/ stacked`,
		`/^q+?$/ plus-then-optional`,
		`/^y{,2}z$/ upto`,
		`/^Case$/i exact-case`,
		`/^x(y|yy)(y*)$/ longest:$1:$2`,
		`/^(o)?p$/ opt:$1:`,
		`/^m.n$/m no-newline-dot`,
		`/^m.n$/ dot-newline`,
		`/^a\)b$/ lit-paren`,
		`/^(a)b)$/ lone-paren`,
		`/^\(u\)$/x bre-group:$1`,
		`/^v+$/x bre-plus-literal`,
		`/^w\{2\}$/x bre-interval`,
	}, "\n"))
	if len(tab.warnings) != 0 {
		t.Fatalf("warnings: %q", tab.warnings)
	}
	for key, want := range map[string]string{
		"ab":      "xa-b-$-a",
		`\.`:      "bracket-backslash",
		"kkkkkk":  "stacked",
		"q":       "plus-then-optional",
		"qqq":     "plus-then-optional",
		"z":       "upto",
		"yyz":     "upto",
		"Case":    "exact-case",
		"xyy":     "longest:y:y", // glibc agrees: not POSIX subexpression rules
		"p":       "opt::",
		"m\nn":    "dot-newline",
		"mxn":     "no-newline-dot",
		"a)b":     "lit-paren",
		"u":       "bre-group:u",
		"v+":      "bre-plus-literal",
		"ww":      "bre-interval",
		"NOMATCH": "",
	} {
		got, found, err := tab.Lookup(key)
		if err != nil || found != (want != "") || got != want {
			t.Errorf("Lookup(%q) = %q, %v, %v; want %q", key, got, found, err, want)
		}
	}
	if _, found, _ := tab.Lookup("case"); found {
		t.Errorf("i flag did not make /^Case$/i case-sensitive")
	}
}

func TestRegexpUnsupported(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`/^(x)\1$/ B`, `regexp:t.map line 1: backreference \1 is not supported`},
		{"# c\n/\\<qq/ W", `regexp:t.map line 2: word anchor \< is not supported`},
		{`/\d/ D`, `escape \d is not supported`},
		{`/a{1001}/ D`, `repeat count {1001} is not supported`},
		{`/(a{100}){100}/ D`, `repeat count {100} is not supported by moat's RE2 engine; RE2 allows at most 1000 repetitions, nested counts multiplied`},
	} {
		_, err := parseRegexpSource(posixDialect{}, "t.map", []byte(c.src))
		var u *UnsupportedError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want UnsupportedError containing %q", c.src, err, c.want)
		}
	}
}

func TestRegexpSyntaxWarnings(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`/^*a/ X`, "regexp map t.map, line 1: Invalid preceding regular expression"},
		{`/a{x}/ X`, `regexp map t.map, line 1: Invalid content of \{\}`},
		{`/a{1/ X`, `regexp map t.map, line 1: Unmatched \{`},
		{`/(a/ X`, `regexp map t.map, line 1: Unmatched ( or \(`},
		{`/[a/ X`, "regexp map t.map, line 1: Unmatched [, [^, [:, [., or [="},
		{`/[[:foo:]]/ X`, "regexp map t.map, line 1: Invalid character class name"},
		{`/[z-a]/ X`, "regexp map t.map, line 1: Invalid range end"},
		{`/a\/ X`, `regexp map t.map, line 1: no closing regexp delimiter "/": skipping this rule`},
		{`/a/q X`, `regexp map t.map, line 1: unknown regexp option "q": skipping this rule`},
		{`foo bar`, "regexp map t.map, line 1: ignoring unrecognized request"},
		{`/a/ $`, `empty macro name: "$"`},
		{`/a/ ${1`, `truncated macro reference: "${1"`},
		{`/a/ $x`, `regexp map t.map, line 1: non-numeric replacement index "x"`},
		{`/(a)/ $0`, `regexp map t.map, line 1: out-of-range replacement index "0"`},
		{"  /a/ X", `t.map: logical line must not start with whitespace: "  /a/ X"`},
	} {
		tab := parseRE(t, c.src)
		if !strings.Contains(strings.Join(tab.warnings, "\n"), c.want) {
			t.Errorf("%q: warnings %q, want %q", c.src, tab.warnings, c.want)
		}
		if len(tab.rules) != 0 {
			t.Errorf("%q: bad rule was kept", c.src)
		}
	}
}

func TestRegexpContinuationAndComments(t *testing.T) {
	tab := parseRE(t, "/a/ x\n# comment\n  y\n\n/b/ p\n   \n  q\nif /c/\n/d/ in\nENDIF\n")
	for key, want := range map[string]string{"a": "x  y", "b": "p  q", "cd": "in"} {
		if got, _, _ := tab.Lookup(key); got != want {
			t.Errorf("Lookup(%q) = %q, want %q", key, got, want)
		}
	}
	if _, found, _ := tab.Lookup("d"); found {
		t.Errorf("rule inside a failed IF matched")
	}
}

func TestRegexpTrustCheck(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x")
	if err := os.WriteFile(p, []byte("/a/ b\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("regexp:"+p, DefaultOptions()); err == nil || !strings.Contains(err.Error(), "writable") {
		t.Errorf("world-writable regexp table opened: %v", err)
	}
	if _, err := Open("regexp:"+filepath.Join(dir, "missing"), DefaultOptions()); err == nil {
		t.Errorf("missing table opened")
	}
}

func FuzzRegexpTable(f *testing.F) {
	for _, s := range []string{
		"/a/ b", "if /x/\n/(y)/ $1\nendif", `/[\]a]+{2}/x ${1}`, "/a/!/b/ c", "!/a/ b\n  c",
		`/\(a\)\{1,2\}/x $1`, "/[[:alpha:]-]/m r", "endif\nif !/q/i\n", `/a|*b/ x`, "/(a)(b)/ $2$1$$",
	} {
		f.Add([]byte(s), "ab")
	}
	f.Fuzz(func(t *testing.T, src []byte, key string) {
		tab, err := parseRegexpSource(posixDialect{}, "f", src)
		if err != nil {
			var u *UnsupportedError
			if !errors.As(err, &u) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		tab.Lookup(key)
	})
}

// TestSyntaxErrorWinsOverUnsupported: a rule Postfix would skip with a
// warning (a syntax error anywhere, an out-of-range $n) gets that warning
// even when it also holds a construct RE2 cannot do; only a rule Postfix
// would load makes the open fail.
func TestSyntaxErrorWinsOverUnsupported(t *testing.T) {
	for _, c := range []struct {
		d         reDialect
		src, warn string
	}{
		{posixDialect{}, `/\a{/ x`, `Unmatched \{`},
		{posixDialect{}, `/(a)\2/ x`, "Invalid back reference"},
		{posixDialect{}, `/(a*\a-+/x R($1)`, `out of range replacement index "1"`},
		{pcreDialect{}, `/(?=a)(/ x`, "missing closing parenthesis"},
		{pcreDialect{}, `/(a)\2/ x`, "reference to non-existent subpattern"},
		{pcreDialect{}, `/k++?/ x`, "quantifier does not follow a repeatable item"},
		{pcreDialect{}, `/(?>a)/ $1`, `out of range replacement index "1"`},
	} {
		tab, err := parseRegexpSource(c.d, "t", []byte(c.src))
		if err != nil {
			t.Errorf("%s %q: open failed: %v", c.d.kind(), c.src, err)
			continue
		}
		if !strings.Contains(strings.Join(tab.warnings, "\n"), c.warn) {
			t.Errorf("%s %q: warnings %q, want %q", c.d.kind(), c.src, tab.warnings, c.warn)
		}
	}
}
