package maps

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"moat/internal/testutil"
)

// diffCase is one table and the keys queried against it, both with
// Debian's `postmap -q KEY TYPE:FILE` and with moat.
type diffCase struct {
	typ  string
	name string
	src  string
	keys []string
}

// diffCorpus covers regexp:, pcre: and cidr: tables. Every key is
// compared on value and exit status, and each table's warnings on text.
// The key "-" is never used: `postmap -q -` reads keys from standard input.
var diffCorpus = []diffCase{
	{"regexp", "basic", `
/^(a)(b)$/	x$1-${2}-$$-$(1)
/^[\.]+$/	bracket-backslash
/^k{2}{3}$/	stacked
/^q+?$/	plus-then-optional
/^y{,2}z$/	upto
/^Case$/i	exact-case
/^x(y|yy)(y*)$/	longest:$1:$2
/(a|ab)(c|bcd)(d*)/	alt:$1:$2:$3
/^(a*)(a*)$/	greedy:$1:$2
/^(o)?p$/	opt:$1:
/^a\)b$/	lit-paren
/^(r)s)$/	lone-paren
/^\(u\)$/x	bre-group:$1
/^v+$/x	bre-plus-literal
/^w\{2\}$/x	bre-interval
/^[^]a]z$/	neg-rbracket
/^[[:digit:]]+$/	digits
/^\w+\.\W$/	word
/^s\s\S$/	space-nonspace
/^user@(.*)$/	domain=$1
/^(.+)@example\.com$/	local ${1}!
`, []string{"ab", `\.`, "kkkkkk", "q", "qqq", "z", "yyz", "Case", "case", "xyy", "abcd", "aaa", "p", "op", "a)b", "rs)", "u", "v+", "ww", "bz", "]z", "12345", "ab_1.!", "s\v\v", "s \t", "s\tx", "user@Example.ORG", "Joe@EXAMPLE.com", "nomatch"}},
	{"regexp", "nesting", `
# comment
if /^mail\./
/^mail\.(spam|junk)\./	REJECT $1 host
!/^mail\.ok\./	DUNNO
endif
if !/\.test$/
/^www\./	web
  continued
endif
/^a/!/b/	a-not-b
/^c/	
IF /^Z/
/^zz$/	nested-upper
ENDIF
endif
/(/	broken
/x/y	badflag
/(1)/	$2
!/(n)/	$1
/^end$/	$$$$ ${1
/(a)\2/	bad-backref
/\a{/	escape-then-syntax
/(a*\a-+/x	R($1)
/^\?b$/x	bre-literal-question
/^a**$/x	bre-stacked
/^last$/	last
`, []string{"mail.spam.example", "mail.ok.example", "mail.x.example", "www.test", "www.example", "ac", "abc", "c", "zz", "ZZ", "end", "last", "n"}},
	{"regexp", "edges", `
  /^orphan$/	orphan
    still-orphan
/^a\]]$/	bs-bracket
/^[a\]]+$/	bs-bracket2
/^[]-a]$/	rb-range
/^[a-]$/	trailing-dash
/^[0-A]$/	icase-range
/^[[.hyphen.]]$/	collating-name
/^[[=ab=]]$/	equivalence-name
/^[[.-.]a]$/	collating-char
/^[_-z]$/	icase-bad-range
/^[_-z]$/i	case-range
/^[[:alpha:][:digit:]_]+$/	classes
/^(|x)y$/	empty-alt:$1
/^b{,}c$/	empty-interval
/^[A-C]+$/	range-icase
"^d/e$"	quote-delim
#^comment$#	never
|^p\|q$|	pipe-delim
/^l1$/m	ml-first
/^l2$/m	ml-second
/^f.g$/	f-dot-g
/^[^x]h$/m	neg-class-ml
if ! /^skip/
/^s(.)(.)$/	two:$2$1
endif
/^tt$/ix	bre-exact
/^t\{1,\}u$/x	bre-brace
/^\(v\)*w$/x	bre-star
/^*z$/x	bre-leading-star
/^a\|b$/x	gnu-alt
` + "/\\`q/\tstart-anchor\n" + `/e\'/	end-anchor
`, []string{"orphan", "a]]", "a]", "\\]", "a]]a", "]", "^", "a", "A", "_", "abc123_", "y", "xy", "bbbc", "c", "abc", "d/e", "#^comment$#", "p|q", "l1\nl2", "zz\nl2", "f\ng", "\nh", "ah", "sab", "skip", "TT", "tt", "tu", "tttu", "vvw", "w", "*z", "a|b", "a", "qq", "xe", "ex"}},
	{"regexp", "bytes", "/^.$/\tone-byte\n/^..$/\ttwo-bytes\n/^[\xc3\xa9x]+$/\tbyte-class\n/^caf(.)(.)!$/\tcaf:$1$2\n/^\xe9t\xe9$/\tlatin1\n/^\xc3\xa9t\xc3\xa9$/\tutf8\n/^[[:alpha:]]+$/\talpha\n/^[^a]{3}$/\tnot-a-3\n",
		[]string{"\u00e9", "\u00c9", "\xc3\xc3", "x\xa9", "caf\u00e9!", "\xe9t\xe9", "\u00e9t\u00e9", "\u00c9T\u00c9", "abc", "\u00e9\u00e9", "a\u00e9", "\u212a"}},
	{"pcre", "bytes", "/^.$/\tone-byte\n/^..$/\ttwo-bytes\n/^[\xc3\xa9x]+$/\tbyte-class\n/^caf(.)(.)!$/\tcaf:$1$2\n/^\\xe9t\\x{E9}$/\tlatin1-escape\n/^\xc3\xa9t\xc3\xa9$/\tutf8\n/^\\w+$/\tword\n/^k$/\tkay\n/^\\x{100}$/\ttoo-large\n",
		[]string{"\u00e9", "\u00c9", "\xc3\xc3", "x\xa9", "caf\u00e9!", "\xe9t\xe9", "\u00e9t\u00e9", "\u00c9T\u00c9", "abc", "\u00e9\u00e9", "\u212a", "K"}},
	{"pcre", "basic", `
/^(a)(b)$/	x$1-${2}-$$
/^q+?$/	lazy
/^(?i:CaSe)$/	inline-i
/^Case$/i	exact-case
/^([a-z]+)-\d{2,3}$/	code $1
/^\Qa.b\E$/	quoted
/^a\x41\e?$/	hex
/^x   y # comment
 $/x	extended
/^[\w.-]+@(example\.com)$/	dom=$1
/^(?<user>[^@]+)@/	named $1
/^line1.line2$/	dotall
/^line1.line2$/s	no-dotall
/^m$/m	multiline
/^\d+$/	digits
/^[]a]b$/	rbracket
/^tab\tx$/	tabbed
/A/A	anchored-A
/^b(.*?)(c*)$/	lazy2:$1:$2
/^u(.*)v/U	ungreedy:$1
/^h\h$/	hspace
/^a(?#comment)b$/	comment
/^(?'word'\w+)!$/	named:$1
/^\cA\e\o{101}\x42\0101$/	controls
/^r\Rr$/	linebreak
/^n\Nn$/	not-newline
/^[\b]$/	backspace
/^{,2}$/	literal-brace
/^v\vv$/	vspace
/^s\s\S$/	space-nonspace
/^c[\s][\S]$/	class-space
/^hh\h$/	hspace-byte
`, []string{"ab", "hi!", "\x01\x1bAB\b1", "r\r\nr", "r\nr", "nxn", "n\nn", "\b", "{,2}", "v\nv", "v\x85v", "s\v\v", "s \t", "s\tx", "c\v\v", "c\vx", "hh\xa0", "hh\u00a0", "ab", "q", "qqqq", "case", "CASE", "Case", "abc-12", "abc-1234", "a.b", "aXb", "aA", "aA\x1b", "xy", "x y", "joe@example.com", "bob@x", "line1\nline2", "m", "a\nm\nz", "123", "]b", "tab\tx", "Abc", "bA", "bxxcc", "uavbv", "h x", "h\tx", "h\x20"}},
	{"pcre", "nesting", `
if /^mail\./
/^mail\.(spam|junk)\./	REJECT $1 host
endif
/^a/!/b/	a-not-b
/(/	broken
/a)/	broken2
/[a/	broken3
/x/X	obsolete-X
/y/Q	bad-option
/(1)/	$2
/^*/	anchor-star
/a\b?/	boundary-optional
/(a)\2/	missing-group
/\k*/	bad-k
/(?<n>a)\k<m>/	missing-name
/k++?/	after-possessive
/(?=a)(/	unsupported-then-syntax
/(?>a)(/	atomic-then-syntax
/^last$/	last
`, []string{"mail.spam.example", "mail.x", "abc", "x", "y", "last", "?b", "b"}},
	{"cidr", "basic", `
192.168.0.0/16	private-192
10.0.0.0/8	private-10
!172.16.0.0/12	not-172
172.16.1.1	host
2001:db8::/32	doc6
::ffff:1.2.3.0/120	mapped
::1	loopback6
[192.0.2.0]/24	bracket1
[198.51.100.0/24]	bracket2
1.2.3.4/24	hostbits
1.2.3.0/33	badlen
1.2.3.0/2x	badmask
1.2.3.999	badaddr
01.2.3.4	leadingzero
fe80::1%eth0	zone
::1.2.3.5/127	compat
1::5/120	v6hostbits
::ffff:1.2.3.5/127	mappedbits
203.0.113.0/24	
if 203.0.113.0/24 junk
endif junk
endif
0.0.0.0/0	any4
`, []string{"192.168.1.1", "10.1.2.3", "172.16.1.1", "172.17.0.1", "8.8.8.8", "2001:db8::1", "2001:db9::1", "::ffff:1.2.3.4", "1.2.3.4", "::1", "192.0.2.7", "198.51.100.9", "junk", "", "[192.168.1.1]", "192.168.1.01", "fe80::1%eth0"}},
	{"cidr", "blocks", `
if 10.0.0.0/8
if !10.1.0.0/16
10.2.3.4	ten-not-ten-one
endif
10.1.2.3	ten-one
endif
IF ::/0
::f4/126	v6-block
ENDIF
! ! 0.0.0.0/0	double-negation
if
if !
!
`, []string{"10.2.3.4", "10.1.2.3", "10.1.2.4", "::f5", "::f8", "1.1.1.1", "::1"}},
}

func writeDiffTable(t *testing.T, dir string, c diffCase) string {
	t.Helper()
	p := filepath.Join(dir, c.typ+"-"+c.name)
	if err := os.WriteFile(p, []byte(strings.TrimPrefix(c.src, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// diffAllowedWarnings lists the Postfix warnings moat words differently,
// with the reason, keyed by table.
var diffAllowedWarnings = map[string]map[string]string{
	// PCRE2 reports the offset where it noticed the error; moat's
	// offsets are approximations from Go's parser, the text is the same.
	"pcre-nesting": {
		"error in regex at offset 2: unmatched closing parenthesis": "error in regex at offset 1: unmatched closing parenthesis",
	},
}

func TestPostmapDifferential(t *testing.T) {
	postmap := testutil.PostfixTool(t, "postmap")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	queries := 0
	for _, c := range diffCorpus {
		path := writeDiffTable(t, dir, c)
		opts := DefaultOptions()
		opts.Warn = func(string) {} // compared through Warner below
		tab, err := Open(c.typ+":"+path, opts)
		if err != nil {
			t.Errorf("%s %s: open: %v", c.typ, c.name, err)
			continue
		}
		var pfWarnings []string
		for i, key := range c.keys {
			cmd := exec.Command(postmap, "-c", dir, "-q", key, c.typ+":"+path)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			status := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				status = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("run postmap: %v", err)
			}
			if i == 0 {
				for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
					if l != "" {
						pfWarnings = append(pfWarnings, strings.TrimPrefix(l, "postmap: warning: "))
					}
				}
			}
			want := strings.TrimSuffix(stdout.String(), "\n")
			got, found, lerr := tab.Lookup(key)
			gotStatus := 1
			if found {
				gotStatus = 0
			}
			if lerr != nil || gotStatus != status || (found && got != want) {
				t.Errorf("%s %s: key %q: moat %q (status %d, err %v), postmap %q (status %d)",
					c.typ, c.name, key, got, gotStatus, lerr, want, status)
			}
			queries++
		}
		allowed := diffAllowedWarnings[c.typ+"-"+c.name]
		for i, w := range pfWarnings {
			w = strings.ReplaceAll(w, dir+"/", "")
			if alt, ok := allowed[strings.TrimPrefix(w, w[:strings.Index(w, ": ")+2])]; ok && strings.Contains(w, "line") {
				w = w[:strings.Index(w, ": ")+2] + alt
			}
			pfWarnings[i] = w
		}
		var mWarnings []string
		for _, w := range tab.(Warner).Warnings() {
			mWarnings = append(mWarnings, strings.ReplaceAll(w, dir+"/", ""))
		}
		if strings.Join(pfWarnings, "\n") != strings.Join(mWarnings, "\n") {
			t.Errorf("%s %s: warnings differ\npostmap:\n%s\nmoat:\n%s", c.typ, c.name, strings.Join(pfWarnings, "\n"), strings.Join(mWarnings, "\n"))
		}
	}
	if queries < 60 {
		t.Errorf("only %d differential queries; want at least 60", queries)
	}
	t.Logf("%d postmap -q queries compared", queries)
}

// refusedCase is a rule Postfix accepts but moat refuses to load, with
// the reason. The test proves both halves: postmap loads the rule without
// a warning (and answers the key as shown), moat's Open fails with an
// *UnsupportedError naming the construct.
type refusedCase struct {
	typ, rule, key, postfix, reason string
}

var refusedCorpus = []refusedCase{
	{"regexp", `/^(a)\1$/ R`, "aa", "R", "RE2 has no backreferences"},
	{"regexp", `/\<qq/ R`, "a qq", "R", "RE2 has no start-of-word anchor; \\b is the replacement"},
	{"regexp", `/q\>/ R`, "q a", "R", "RE2 has no end-of-word anchor"},
	{"regexp", `/^\d$/ R`, "d", "", "glibc silently matches nothing for \\d; moat says so instead of loading a dead rule"},
	{"regexp", `/^a{1001}$/ R`, "a", "", "RE2 allows at most 1000 repetitions"},
	{"pcre", `/^a(?=b)/ R`, "ab", "R", "RE2 has no lookahead"},
	{"pcre", `/^a(?!b)/ R`, "ac", "R", "RE2 has no negative lookahead"},
	{"pcre", `/(?<=a)b/ R`, "ab", "R", "RE2 has no lookbehind"},
	{"pcre", `/(?<!a)b/ R`, "cb", "R", "RE2 has no negative lookbehind"},
	{"pcre", `/^(a)\1$/ R`, "aa", "R", "RE2 has no backreferences"},
	{"pcre", `/^(?<x>a)\k<x>$/ R`, "aa", "R", "RE2 has no backreferences"},
	{"pcre", `/^(a)\g1$/ R`, "aa", "R", "RE2 has no backreferences"},
	{"pcre", `/^(?:\1b|(a))+$/ R`, "aab", "R", "RE2 has no backreferences (a forward one here)"},
	{"pcre", `/^(?P<x>a)(?P=x)$/ R`, "aa", "R", "RE2 has no backreferences"},
	{"pcre", `/^a++$/ R`, "aa", "R", "RE2 has no possessive quantifiers"},
	{"pcre", `/^(?>a+)$/ R`, "aa", "R", "RE2 has no atomic groups"},
	{"pcre", `/\((?:[^()]|(?R))*\)/ R`, "(())", "R", "RE2 has no recursion"},
	{"pcre", `/^(a)?(?(1)b|c)$/ R`, "ab", "R", "RE2 has no conditional groups"},
	{"pcre", `/^(?|(a)|(b))$/ R`, "b", "R", "RE2 has no branch reset groups"},
	{"pcre", `/^a\Kb$/ R`, "ab", "R", "RE2 has no match reset"},
	{"pcre", `/(*UTF)^a$/ R`, "a", "R", "RE2 has no PCRE verbs"},
	{"pcre", `/(?x)^a b$/ R`, "ab", "R", "Go has no inline x option (the table's x flag works)"},
	{"pcre", `/^a{1001}$/ R`, "a", "", "RE2 allows at most 1000 repetitions"},
	{"pcre", `/^(a{100}){100}$/ R`, "a", "", "RE2 multiplies nested counts against its limit of 1000"},
	{"regexp", `/^(a{100}){100}$/ R`, "a", "", "RE2 multiplies nested counts against its limit of 1000"},
}

func TestPostmapRefusedConstructs(t *testing.T) {
	postmap := testutil.PostfixTool(t, "postmap")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, c := range refusedCorpus {
		path := filepath.Join(dir, c.typ+strconv.Itoa(i))
		if err := os.WriteFile(path, []byte(c.rule+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(postmap, "-c", dir, "-q", c.key, c.typ+":"+path).CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != c.postfix {
			t.Errorf("%s %s: postmap said %q, the corpus says %q", c.typ, c.rule, got, c.postfix)
		}
		opts := DefaultOptions()
		opts.Warn = func(string) {}
		_, oerr := Open(c.typ+":"+path, opts)
		var u *UnsupportedError
		if !errors.As(oerr, &u) || u.Line != 1 {
			t.Errorf("%s %s: moat opened it (err %v); want an UnsupportedError (%s)", c.typ, c.rule, oerr, c.reason)
		}
	}
}

// TestPostmapUTF8Keys: with smtputf8_enable (Options.UTF8) a key that is
// not UTF-8 is refused before any pattern sees it, with Postfix's
// warning; valid UTF-8 keys are still matched byte by byte.
func TestPostmapUTF8Keys(t *testing.T) {
	postmap := testutil.PostfixTool(t, "postmap")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("compatibility_level = 3.6\nsmtputf8_enable = yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tables := map[string]string{"regexp": "/^.$/ ONE\n/^..$/ TWO\n/./ ANY\n", "pcre": "/^.$/ ONE\n/^..$/ TWO\n/./ ANY\n", "cidr": "1.2.3.0/24 NET\n"}
	keys := []string{"\u00e9", "\xe9", "a\xe9b\x01c", "\u00e9\xe9", "1.2.3.4", "1.2.3.4\xe9"}
	for typ, src := range tables {
		path := filepath.Join(dir, typ)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		var warns []string
		opts := DefaultOptions()
		opts.UTF8 = true
		opts.Warn = func(m string) { warns = append(warns, m) }
		tab, err := Open(typ+":"+path, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range keys {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(postmap, "-c", dir, "-q", key, typ+":"+path)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			_ = cmd.Run() // the exit status is compared through found below
			warns = warns[:0]
			v, found, _ := tab.Lookup(key)
			want := strings.TrimSuffix(stdout.String(), "\n")
			if found != (want != "") || v != want {
				t.Errorf("%s %q: moat %q/%v, postmap %q", typ, key, v, found, want)
			}
			pfWarn := strings.TrimSpace(strings.ReplaceAll(stderr.String(), "postmap: warning: ", ""))
			if got := strings.Join(warns, "\n"); got != pfWarn {
				t.Errorf("%s %q: moat warned %q, postmap %q", typ, key, got, pfWarn)
			}
		}
	}
}
