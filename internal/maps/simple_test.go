package maps

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"moat/internal/testutil"
)

// dictOpen reproduces the output of Postfix's util/dict_open test driver
// (`./dict_open TYPE:NAME read [flags] <commands`): an error line when the
// open fails, the owner line, then for each "get KEY" the echoed command
// and "KEY=VALUE" or "KEY: not found".
func dictOpen(spec string, fold bool, gets ...string) string {
	var b strings.Builder
	tbl, err := Open(spec, Options{Fold: fold})
	if err != nil {
		fmt.Fprintf(&b, "./dict_open: error: %v\n", err)
	}
	// dict_open prints the table owner; 2147483647 is how it shows
	// "trusted" (not a file), the case for every inline: table.
	b.WriteString("owner=trusted (uid=2147483647)\n")
	for _, k := range gets {
		fmt.Fprintf(&b, "> get %s\n", k)
		if tbl == nil {
			// dict_open then uses a surrogate that fails every lookup;
			// the vector never reaches this.
			fmt.Fprintf(&b, "%s: error\n", k)
			continue
		}
		v, ok, err := tbl.Lookup(k)
		switch {
		case err != nil:
			fmt.Fprintf(&b, "%s: error\n", k)
		case ok:
			fmt.Fprintf(&b, "%s=%s\n", k, v)
		default:
			fmt.Fprintf(&b, "%s: not found\n", k)
		}
	}
	return b.String()
}

// TestDictInlineVector replays postfix/src/util/Makefile.in target
// dict_inline_test and compares with util/dict_inline.ref byte for byte.
// The run "read 'fold_fix,utf8_request'" is the same as "read fold_fix"
// here: moat folds ASCII only and the keys are ASCII.
func TestDictInlineVector(t *testing.T) {
	ref := mustRead(t, filepath.Join(testutil.PostfixTests(t), "util", "dict_inline.ref"))
	var got strings.Builder
	for _, spec := range []string{"{ }", "{ foo = xx }", "{ foo=xx }x", "{ foo=xx x", "{ foo=xx {x=y}x}"} {
		got.WriteString(dictOpen("inline:"+spec, false))
	}
	for range 2 {
		got.WriteString(dictOpen("inline:{ foo=XX, { bAr = lotsa stuff }}", true, "foo", "bar", "baz"))
	}
	if got.String() != string(ref) {
		t.Errorf("dict_open output differs from dict_inline.ref\n--- got\n%s--- want\n%s", got.String(), ref)
	}
}

type inlineCase struct {
	spec, key, want string
	found           bool
	err             string
	// differs says why moat deliberately answers otherwise than Postfix.
	differs string
}

// inlineCases were taken from Debian's postmap 3.7 (`postmap -q KEY
// inline:SPEC`); TestInlineDifferential re-checks them.
func inlineCases() []inlineCase {
	return []inlineCase{
		{spec: "{ {a=1}, {b=2}}", key: "a", want: "1", found: true},
		{spec: "{a=1,,b=2}", key: "b", want: "2", found: true},
		{spec: "{a={b=c}}", key: "a", want: "{b=c}", found: true},
		{spec: "{a=1,a=2}", key: "a", want: "2", found: true},
		{spec: "{{a=1 , }}", key: "a", want: "1 ,", found: true},
		{spec: `{"a"=1}`, key: `"a"`, want: "1", found: true},
		{spec: `{ {"a b" = 1} }`, key: `"a b"`, want: "1", found: true},
		{spec: `{ {"x"y = 1} }`, key: `"x"y`, want: "1", found: true},
		{spec: "{=1}", key: "", want: "1", found: true},
		{spec: "{ X=1 }", key: "x", want: "1", found: true},
		{spec: "{ {a=1 }", err: `bad syntax: "inline:{ {a=1 }"; need "inline:{name=value...}"`},
		{spec: "{a=1}}", err: `bad syntax: "inline:{a=1}}"; need "inline:{name=value...}"`},
		{spec: "{a=1} ", err: `bad syntax: "inline:{a=1} "; need "inline:{name=value...}"`},
		{spec: "a=1", err: `bad syntax: "inline:a=1"; need "inline:{name=value...}"`},
		{spec: "", err: `bad syntax: "inline:"; need "inline:{name=value...}"`,
			differs: "Postfix rejects an empty name earlier, with its generic type:name message"},
		{spec: "{a=1}{b=2}", err: `bad syntax: "inline:{a=1}{b=2}"; need "inline:{name=value...}"`},
		{spec: "{ {} }", err: `no key found; expected format: key = value: "inline:{ {} }"; need "inline:{name=value...}"`},
		{spec: "{ {a}}", err: `missing '=' after attribute name: "inline:{ {a}}"; need "inline:{name=value...}"`},
		{spec: "{a=1 b}", err: `missing '=' after attribute name: "inline:{a=1 b}"; need "inline:{name=value...}"`},
		{spec: `{"a=1}`, err: `unbalanced '"': "inline:{"a=1}"; need "inline:{name=value...}"`},
		{spec: `{ "a b"=1 }`, err: `unbalanced '"': "inline:{ "a b"=1 }"; need "inline:{name=value...}"`},
		{spec: "{a=}", err: `empty value for "a": "inline:{a=}"; need "inline:{name=value...}"`,
			differs: "Postfix opens it and warns at each lookup that an empty result is not allowed"},
	}
}

func TestInline(t *testing.T) {
	for _, tc := range inlineCases() {
		tbl, err := Open("inline:"+tc.spec, DefaultOptions())
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: err = %v\nwant %s", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.spec, err)
			continue
		}
		v, ok, err := tbl.Lookup(tc.key)
		if v != tc.want || ok != tc.found || err != nil {
			t.Errorf("%q: Lookup(%q) = %q, %v, %v; want %q", tc.spec, tc.key, v, ok, err, tc.want)
		}
	}
}

func TestStatic(t *testing.T) {
	for spec, want := range map[string]string{
		"static:abc":         "abc",
		"static:{ a b }":     "a b",
		"static:a b":         "a b",
		"static:{ {x} }":     "{x}",
		"static:OK, really!": "OK, really!",
	} {
		tbl, err := Open(spec, DefaultOptions())
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		for _, k := range []string{"x", "", "ANY"} {
			if v, ok, err := tbl.Lookup(k); v != want || !ok || err != nil {
				t.Errorf("%s: Lookup(%q) = %q, %v, %v", spec, k, v, ok, err)
			}
		}
	}
	for spec, want := range map[string]string{
		"static:{ a b":    `bad static:name syntax: missing '}' in "{ a b"`,
		"static:{ a b }x": `bad static:name syntax: syntax error after '}' in "{ a b }x"`,
		"static:{ a b } ": `bad static:name syntax: syntax error after '}' in "{ a b } "`,
		"static:":         `static:: empty value`,
		"static:{}":       `static:{}: empty value`,
	} {
		if _, err := Open(spec, DefaultOptions()); err == nil || err.Error() != want {
			t.Errorf("%s: err = %v\nwant %s", spec, err, want)
		}
	}
}

func TestFailEnvironTexthash(t *testing.T) {
	tbl, err := Open("fail:oops", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := tbl.Lookup("x"); ok || err == nil {
		t.Errorf("fail: lookup found=%v err=%v; want a temporary error", ok, err)
	}
	if _, err := Open("fail:", DefaultOptions()); err == nil {
		t.Error("fail: without a name opened")
	}

	t.Setenv("MOAT_TEST_VAR", "Value")
	env, err := Open("environ:x", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := env.Lookup("MOAT_TEST_VAR"); !ok || v != "Value" {
		t.Errorf("environ: %q %v", v, ok)
	}
	if _, ok, _ := env.Lookup("moat_test_var"); ok {
		t.Error("environ: variable names must not be folded")
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "th")
	testutil.WriteOld(t, path, []byte("Key1 first\nnovalue\nkey1 second\n\"Up Case\" q\n"))
	var warns []string
	th, err := Open("texthash:"+path, Options{Fold: true, Warn: func(m string) { warns = append(warns, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := th.Lookup("KEY1"); !ok || v != "first" {
		t.Errorf("texthash: %q %v; want the first duplicate", v, ok)
	}
	if v, ok, _ := th.Lookup(`"UP CASE"`); !ok || v != "q" {
		t.Errorf("texthash quoted: %q %v", v, ok)
	}
	want := []string{
		path + ", line 2: expected format: key whitespace value -- ignoring this line",
		path + `, line 3: duplicate entry: "key1"`,
	}
	if strings.Join(warns, "\n") != strings.Join(want, "\n") {
		t.Errorf("texthash warnings:\n%q\nwant\n%q", warns, want)
	}
}

func TestUnix(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	gr := filepath.Join(dir, "group")
	os.WriteFile(pw, []byte("root:x:0:0:root:/root:/bin/bash\n#c\nbad:line\nbob:x:0010:100:Bob B,,,:/home/bob:/bin/sh\n"), 0o644)
	os.WriteFile(gr, []byte("mail:x:8:\nstaff:x:50:bob,alice\n"), 0o644)
	p := &unixTable{path: pw, fields: 7, opts: Options{Fold: true}}
	g := &unixTable{path: gr, fields: 4, opts: Options{Fold: true}}
	for _, tc := range []struct {
		tbl       *unixTable
		key, want string
	}{
		{p, "root", "root:x:0:0:root:/root:/bin/bash"},
		{p, "BOB", "bob:x:10:100:Bob B,,,:/home/bob:/bin/sh"},
		{p, "nobody", ""},
		{g, "staff", "staff:x:50:bob,alice"},
		{g, "mail", "mail:x:8:"},
	} {
		v, ok, err := tc.tbl.Lookup(tc.key)
		if v != tc.want || ok != (tc.want != "") || err != nil {
			t.Errorf("%s %q: %q %v %v", tc.tbl.path, tc.key, v, ok, err)
		}
	}
	if _, err := Open("unix:foo", DefaultOptions()); err == nil || err.Error() != "unknown table: unix:foo" {
		t.Errorf("unix:foo: %v", err)
	}
}

// TestUnixDifferential compares unix:passwd.byname and unix:group.byname
// with Debian's postmap -q for every name on this machine.
func TestUnixDifferential(t *testing.T) {
	postmap := testutil.PostfixTool(t, "postmap")
	env := postfixEnv(t)
	for _, c := range []struct{ table, file string }{
		{"unix:passwd.byname", "/etc/passwd"},
		{"unix:group.byname", "/etc/group"},
	} {
		data, err := os.ReadFile(c.file)
		if err != nil {
			t.Skip(err)
		}
		var names []string
		for _, line := range strings.Split(string(data), "\n") {
			if n, _, ok := strings.Cut(line, ":"); ok && n != "" && n[0] != '#' {
				names = append(names, n)
			}
		}
		names = append(names, "no-such-name", "ROOT")
		cmd := exec.Command(postmap, "-q", "-", c.table)
		cmd.Env = env
		cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
		out, _ := cmd.Output()
		tbl, err := Open(c.table, DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		for _, n := range names {
			if v, ok, err := tbl.Lookup(n); err != nil {
				t.Fatal(err)
			} else if ok {
				fmt.Fprintf(&got, "%s\t%s\n", n, v)
			}
		}
		if got.String() != string(out) {
			t.Errorf("%s:\nmoat:\n%s\npostmap:\n%s", c.table, got.String(), out)
		}
	}
}

func TestRecords(t *testing.T) {
	tbl, err := Open("inline:{ B=2, a=1 }", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	recs, err := tbl.(interface{ Records() ([]Record, error) }).Records()
	if err != nil || fmt.Sprint(recs) != "[{a 1 0} {b 2 0}]" {
		t.Errorf("Records = %v, %v", recs, err)
	}
	st, _ := Open("static:x", DefaultOptions())
	if _, ok := st.(interface{ Records() ([]Record, error) }); ok {
		t.Error("static: cannot be listed, as in Postfix")
	}
}

// TestInlineDifferential runs each inline case through Debian's postmap:
// same value, or same error text after "postmap: fatal: ". The commands
// run concurrently because postmap sleeps a second before a fatal exit.
func TestInlineDifferential(t *testing.T) {
	postmap := testutil.PostfixTool(t, "postmap")
	env := postfixEnv(t)
	var wg sync.WaitGroup
	for _, tc := range inlineCases() {
		if tc.differs != "" {
			continue
		}
		wg.Go(func() {
			key := tc.key
			if tc.err != "" {
				key = "a"
			}
			cmd := exec.Command(postmap, "-q", key, "inline:"+tc.spec)
			cmd.Env = env
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, _ := cmd.Output()
			if tc.err != "" {
				if got := strings.TrimPrefix(strings.TrimSpace(stderr.String()), "postmap: fatal: "); got != tc.err {
					t.Errorf("%q: postmap says %q, moat %q", tc.spec, got, tc.err)
				}
				return
			}
			if want := tc.want + "\n"; string(out) != want {
				t.Errorf("%q key %q: postmap %q, moat %q", tc.spec, key, out, want)
			}
		})
	}
	wg.Wait()
}
