package aliases

import (
	"strings"
	"testing"
)

// The expectations below were produced by Debian's postalias 3.7.11
// (postalias FILE; postalias -q KEY FILE) on the same lines.
func TestValueSpelling(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`a b c`, `a b c`},
		{`a  b`, `a b`},
		{`|"cmd a"`, `|"cmd a"`},
		{`| "cmd a"`, `|"cmd a"`},
		{`a : b`, `a:b`},
		{`a ,b`, `a, b`},
		{`a,,b`, `a, , b`},
		{`,a`, `, a`},
		{`a,`, `a, `},
		{`x <a@b>`, `x <a@b>`},
		{`a(c)b`, `a (c) b`},
		{`a @ b . c`, `a@b.c`},
		{`"a\"b"`, `"a\"b"`},
		{`"a\\b"`, `"a\\b"`},
		{`a\b`, `ab`},
		{`a@[1 .2]`, `a@[1 .2]`},
		{`g: a, b;`, `g:a, b;`},
		{`:include: /x`, `:include:/x`},
		{`\ root`, `" root"`},
		{`a"b"c`, `a "b" c`},
		{`"unterminated`, `"unterminated"`},
		{`(unterm`, `(unterm`},
		{`[unterm`, `[unterm]`},
		{`a)b`, `a)b`},
		{"a\tb", `a b`},
		{`a\`, `a`},
		{`x>y`, `x>y`},
		{`a ! b`, `a!b`},
		{`a % b`, `a%b`},
		{`a # b`, `a # b`},
		{`a < b`, `a <b`},
		{`a ( b`, `a ( b`},
		{`a [ b`, `a [ b]`},
		{`a \ b`, `a " b"`},
		{`a\@b`, `"a@b"`},
		{`a\#b`, `a#b`},
		{`"a b"c\ d`, `"a b" "c d"`},
		{`"a\b"`, `"ab"`},
		{`"ab\"`, `"ab\""`},
		{`"" a`, `"" a`},
		{`(a\)b) c`, `(a\)b) c`},
		{`((x) e`, `((x) e`},
		{`[a\]b] c`, `[a]b] c`},
		{`é\ x`, `"é x"`},
	} {
		as, ws := Parse("f", []byte("k: "+c.in+"\n"), true)
		if len(ws) != 0 || len(as) != 1 {
			t.Errorf("%q: got %v, warnings %v", c.in, as, ws)
			continue
		}
		if as[0].Value != c.want {
			t.Errorf("%q: value %q, want %q", c.in, as[0].Value, c.want)
		}
	}
}

func TestNames(t *testing.T) {
	src := "a;b: v1\na.b: v2\na!b: v3\na%b: v4\na|b: v5\n<a>: v6\n(c): v7\na (c): v8\n" +
		"a\\ b: v9\na , b: v10\na<b: v11\n[d]: v12\na[d]: v13\n\"x\"@y: v14\n\"a\\\"b\": v15\n" +
		"\"a\\\\b\": v16\nAb: v20\na@: v21\n@a: v22\n,: v23\na:b: v24\n(unterm: v25\n\"unterm: v26\n" +
		"nocolon\n  more\nk:\n:empty\n\"\": y\n  \n"
	as, ws := Parse("pk", []byte(src), true)
	var got []string
	for _, a := range as {
		got = append(got, a.Name+"="+a.Value)
	}
	want := "a;b=v1 a.b=v2 a!b=v3 a|b=v5 <a>=v6 (c)=v7 a (c)=v8 a b=v9 a <b=v11 [d]=v12 " +
		"a [d]=v13 a\"b=v15 a\\b=v16 ab=v20 a=b:v24 =y"
	if strings.Join(got, " ") != want {
		t.Errorf("names:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	var msgs []string
	for _, w := range ws {
		msgs = append(msgs, w.String())
	}
	wantMsgs := []string{
		"pk, line 4: name must be local",
		"pk, line 10: need name:value pair",
		"pk, line 14: name must be local",
		"pk, line 18: name must be local",
		"pk, line 19: name must be local",
		"pk, line 20: need name:value pair",
		"pk, line 22: need name:value pair",
		"pk, line 23: need name:value pair",
		"pk, line 24: need name:value pair",
		"pk, line 26: need name:value pair",
		"pk, line 27: need name:value pair",
	}
	if strings.Join(msgs, "\n") != strings.Join(wantMsgs, "\n") {
		t.Errorf("warnings:\n got %s\nwant %s", strings.Join(msgs, "\n"), strings.Join(wantMsgs, "\n"))
	}
}

func TestFoldASCIIOnly(t *testing.T) {
	as, _ := Parse("f", []byte("ÜML: x\nRoot: y\n"), true)
	if as[0].Name != "Üml" || as[1].Name != "root" {
		t.Errorf("folding: %q %q", as[0].Name, as[1].Name)
	}
	as, _ = Parse("f", []byte("Root: y\n"), false)
	if as[0].Name != "Root" {
		t.Errorf("-f kept case: got %q", as[0].Name)
	}
}

func TestOrphan(t *testing.T) {
	_, ws := Parse("f", []byte("  orphan line\n  orphan continued\nk: v\n"), true)
	if len(ws) != 1 || ws[0].String() != `f: logical line must not start with whitespace: "  orphan line  orphan continue..."` {
		t.Errorf("got %v", ws)
	}
}

func TestTargets(t *testing.T) {
	got := Targets(`admin, "b c"@x, |"cmd a, b", /var/f, :include:/etc/x,, (c, d) e`)
	want := []string{`admin`, `"b c"@x`, `|"cmd a, b"`, `/var/f`, `:include:/etc/x`, `(c, d) e`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
