package config

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that the main.cf parser never panics and that what it
// returns keeps its promises: names have no whitespace or '=', values are
// trimmed, lines increase.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "a = b\n", "# c\n a = b\n", "a = b\n  c\n# x\n\n d\n", "=x\n", "a b\n", "a=\r\n",
		"smtpd_banner = $myhostname ESMTP $mail_name\n", "a = ${b?{c}:{d}}\n\tmore\n",
		"x\x00y = z\n", "a =\n\n\n  \t\n b = c\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, _, err := Parse("main.cf", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "main.cf, line ") {
				t.Fatalf("error without location: %v", err)
			}
			return
		}
		last := 0
		for _, e := range entries {
			if e.Name == "" || strings.ContainsAny(e.Name, " \t\r\n\v\f=") {
				t.Fatalf("bad name %q", e.Name)
			}
			if strings.TrimSpace(e.Value) != e.Value && strings.Trim(e.Value, " \t\r\n\v\f") != e.Value {
				t.Fatalf("value not trimmed: %q", e.Value)
			}
			if e.Line <= last {
				t.Fatalf("line %d after %d", e.Line, last)
			}
			last = e.Line
		}
	})
}

// FuzzExpand checks that expansion never panics or runs away, with a table
// that refers to itself and to the input's names.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{
		"$name1", "${name1?x}", "${name2:{$name1}}", "${{$name1} == {a}?{y}:{n}}", "$$", "$(name1",
		"${{1} <level {3.6}}", "${{a} >=level {1} ? {x} : {y} z}", "$loop", "${ name1 }", "$",
		"${{${{x}=={x}}} == {true}}", "${amp}",
	} {
		f.Add(s)
	}
	table := map[string]string{
		"name1": "value1",
		"empty": "",
		"loop":  "a$loop",
		"ref":   "$name1 ${empty:{x}}",
		"amp":   "$ref$ref$ref$ref$ref$ref$ref$ref",
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := &Expander{
			Lookup:  func(n string) (string, bool) { v, ok := table[n]; return v, ok },
			Recurse: true,
		}
		out, st := e.Expand(s)
		if st&^(StatError|StatUndef) != 0 {
			t.Fatalf("status %d", st)
		}
		if !strings.Contains(s, "$") && (out != s || st != 0) {
			t.Fatalf("text without $ changed: %q -> %q (%d)", s, out, st)
		}
		if utf8.ValidString(s) && !strings.Contains(s, "$") && !utf8.ValidString(out) {
			t.Fatal("invalid UTF-8 from valid input")
		}
		scan := &Expander{Refs: func(string) {}, Lookup: e.Lookup}
		if _, st := scan.Expand(s); st&^(StatError|StatUndef) != 0 {
			t.Fatalf("scan status %d", st)
		}
		References(s, func(n string) {
			for i := 0; i < len(n); i++ {
				if !isNameChar(n[i]) {
					t.Fatalf("reference %q is not a name", n)
				}
			}
		})
	})
}

// FuzzSplitList checks that list splitting never panics and loses no
// non-separator text outside braces.
func FuzzSplitList(f *testing.F) {
	for _, s := range []string{"a, b c", "{a, b}", "x {y {z}, w} v", "}{", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := 0
		for _, el := range SplitList(s) {
			if el == "" {
				t.Fatal("empty element")
			}
			n += len(strings.FieldsFunc(el, func(r rune) bool {
				return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n' || r == '\v' || r == '\f'
			}))
		}
		if m := len(strings.FieldsFunc(s, func(r rune) bool {
			return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n' || r == '\v' || r == '\f'
		})); !strings.ContainsAny(s, "{}") && n != m {
			t.Fatalf("%d pieces, want %d", n, m)
		}
	})
}
