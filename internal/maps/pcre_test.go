package maps

import (
	"errors"
	"strings"
	"testing"
)

func TestPCREPostfixVector(t *testing.T) {
	runVector(t, "pcre", "dict_pcre", nil)
}

func parsePCRE(t *testing.T, src string) *regexpTable { return parseDialect(t, pcreDialect{}, src) }

func TestPCREUnsupportedConstructs(t *testing.T) {
	for _, c := range []struct{ pattern, what string }{
		{`a(?=b)`, "lookahead (?="},
		{`a(?!b)`, "negative lookahead (?!"},
		{`(?<=a)b`, "lookbehind (?<="},
		{`(?<!a)b`, "negative lookbehind (?<!"},
		{`(a)\1`, `backreference \1`},
		{`(?<n>a)\k<n>`, `backreference \k<`},
		{`(a)\g1`, `backreference \g1`},
		{`(?P<n>a)(?P=n)`, "named backreference (?P="},
		{`a*+`, "possessive quantifier *+"},
		{`a++`, "possessive quantifier ++"},
		{`a?+`, "possessive quantifier ?+"},
		{`a{2,3}+`, "possessive quantifier {2,3}+"},
		{`(?>a+)b`, "atomic group (?>"},
		{`(a|(?R))`, "recursion or subroutine call (?R)"},
		{`(a)(?1)`, "recursion or subroutine call (?1)"},
		{`(?(1)a|b)`, "conditional group (?("},
		{`(?|(a)|(b))`, "branch reset group (?|"},
		{`(*UTF)a`, "verb or option setting (*UTF)"},
		{`a\Kb`, `match reset \K`},
		{`\Ga`, `end-of-previous-match anchor \G`},
		{`(?x)a b`, "inline option (?x"},
		{`a{1001}`, "repeat count {1001}"},
		{`[[:<:]]a`, "POSIX collating element or word boundary [:<:]"},
	} {
		if err := CheckPCRE(c.pattern, false); err == nil || !strings.Contains(err.Error(), c.what) {
			t.Errorf("CheckPCRE(%q) = %v, want %q", c.pattern, err, c.what)
		}
		_, err := parseRegexpSource(pcreDialect{}, "/etc/postfix/x", []byte("# header\n/"+c.pattern+"/ REJECT\n"))
		var u *UnsupportedError
		if !errors.As(err, &u) || u.Line != 2 || !strings.HasPrefix(err.Error(), "pcre:/etc/postfix/x line 2: ") ||
			!strings.Contains(err.Error(), "is not supported by moat's RE2 engine") {
			t.Errorf("table with %q: err = %v, want an UnsupportedError naming the file and line 2", c.pattern, err)
		}
	}
	for _, ok := range []string{`a(?:b)`, `(?i)a`, `(?i:a)b`, `(?<n>a)`, `(?P<n>a)`, `(?'n'a)`, `a*?`, `a{2}?`, `[(?=]`, `\(?=`, `a(?#note)b`, `\Qa(?=\E`, `[\1]`, `a\Z`} {
		if err := CheckPCRE(ok, false); err != nil {
			t.Errorf("CheckPCRE(%q) = %v, want nil", ok, err)
		}
	}
}

func TestPCRELookups(t *testing.T) {
	tab := parsePCRE(t, strings.Join([]string{
		`/^a(?#comment)b$/ comment`,
		`/^(?'word'\w+)!$/ named:$1`,
		`/^\cA\e\o{101}\x42\0101$/ controls`,
		`/^h\hv\v$/ spaces`,
		`/^r\Rr$/ linebreak`,
		`/^n\Nn$/s not-newline`,
		`/^[\b]$/ backspace`,
		`/^x y$/x extended`,
		`/^\Qa.b\E$/ quoted`,
		`/^{,2}$/ literal-brace`,
		`/^ab(c)$/A anchored:$1`,
	}, "\n"))
	if len(tab.warnings) != 0 {
		t.Fatalf("warnings: %q", tab.warnings)
	}
	for key, want := range map[string]string{
		"ab":            "comment",
		"hi!":           "named:hi",
		"\x01\x1bAB\b1": "controls",
		"h\tv\n":        "spaces",
		"r\r\nr":        "linebreak",
		"nxn":           "not-newline",
		"n\nn":          "",
		"\b":            "backspace",
		"xy":            "extended",
		"a.b":           "quoted",
		"axb":           "",
		"{,2}":          "literal-brace",
		"abc":           "anchored:c",
		"no such thing": "",
	} {
		got, found, err := tab.Lookup(key)
		if err != nil || found != (want != "") || got != want {
			t.Errorf("Lookup(%q) = %q, %v, %v; want %q", key, got, found, err, want)
		}
	}
}

func TestPCRESyntaxWarnings(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`/(/ X`, "pcre map t.map, line 1: error in regex at offset 1: missing closing parenthesis"},
		{`/[a/ X`, "pcre map t.map, line 1: error in regex at offset 2: missing terminating ] for character class"},
		{`/a**/ X`, "quantifier does not follow a repeatable item"},
		{`/\y/ X`, `error in regex at offset 2: unrecognized character follows \`},
		{`/a/!/b/ X`, `pcre map t.map, line 1: unknown regexp option "!": skipping this rule`},
		{`/a X`, `pcre map t.map, line 1: no closing regexp delimiter "/": ignoring this rule`},
	} {
		tab := parsePCRE(t, c.src)
		if !strings.Contains(strings.Join(tab.warnings, "\n"), c.want) {
			t.Errorf("%q: warnings %q, want %q", c.src, tab.warnings, c.want)
		}
		if len(tab.rules) != 0 {
			t.Errorf("%q: bad rule was kept", c.src)
		}
	}
	tab := parsePCRE(t, "/a/X x")
	if len(tab.rules) != 1 || len(tab.warnings) != 1 || !strings.Contains(tab.warnings[0], `ignoring obsolete regexp option "X"`) {
		t.Errorf("X flag: rules %d warnings %q", len(tab.rules), tab.warnings)
	}
}

func FuzzCheckPCRE(f *testing.F) {
	for _, s := range []string{
		`a(?=b)`, `(a)\1`, `a*+`, `(?>a)`, `[\]\b\d-z]`, `\Qa(?=\E`, `(?'n'a)`, `\o{101}\cA\e`,
		`x  # c` + "\n" + `y`, `a{2,}+`, `(?i-s:a)`, `(*UTF8)`, `\x{263a}\x4`, `[[:alpha:][:^digit:]]`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, pattern string, extended bool) {
		goPat, err := translatePCRE(pattern, extended)
		var u *unsupported
		var se *patternSyntaxError
		isUnsupported := errors.As(err, &u)
		if err != nil && !isUnsupported && !errors.As(err, &se) {
			t.Fatalf("translatePCRE(%q): unexpected error type %T: %v", pattern, err, err)
		}
		if err == nil {
			// What the checker passes must never hide an unsupported
			// construct behind a Go syntax that means something else:
			// the translation compiles or fails as a syntax error.
			if _, cerr := (pcreDialect{}).compile(pattern, reFlags{icase: true, extended: !extended, dotall: true}); cerr != nil &&
				!errors.As(cerr, &u) && !errors.As(cerr, &se) {
				t.Fatalf("compile(%q) via %q: unexpected error %T: %v", pattern, goPat, cerr, cerr)
			}
		}
		_, cerr := (pcreDialect{}).compile(pattern, reFlags{icase: true, extended: !extended, dotall: true})
		if (CheckPCRE(pattern, extended) != nil) != errors.As(cerr, &u) {
			t.Fatalf("CheckPCRE disagrees with compile on %q", pattern)
		}
		if !isUnsupported && errors.As(cerr, &u) && !strings.Contains(cerr.Error(), "repeat count") {
			t.Fatalf("compile refuses %q that translation accepted: %v", pattern, cerr)
		}
	})
}

func FuzzPCRETable(f *testing.F) {
	for _, s := range []string{
		"/a/ b", "if /x/\n/(y)/ $1\nendif", "/(?<n>a)b/ $1", "/a/mSxAEU c", "!/a/ b\n  c", "/x/X y",
		"/(/ z", "/[/ z", "endif\nif !/q/i\n",
	} {
		f.Add([]byte(s), "ab")
	}
	f.Fuzz(func(t *testing.T, src []byte, key string) {
		tab, err := parseRegexpSource(pcreDialect{}, "f", src)
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
