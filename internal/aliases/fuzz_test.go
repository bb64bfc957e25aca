package aliases

import (
	"bytes"
	"strings"
	"testing"

	"moat/internal/maps"
)

// FuzzParse checks that any input parses without panicking, that entries
// and warnings point at real lines, and that a stored value reads back as
// itself: local delivery re-tokenizes the values postalias stored.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"root: admin, \"b c\"@x\n  , more\n# c\n\"A B\": x\nnocolon\n",
		"list: :include:/etc/x, |\"cmd a\", /var/f\n",
		"a\\ b: x\n(unterm: y\n\"unterm: z\nw: \"q\n",
		"  orphan\nk: v\n\n\tcont\n",
		"g(cmt): h\n<i>: j\nk,l: m\nu@h: x\np%h: y\n",
		"k: [a\\]b] (c\\)d) \"e\\\"f\" g\\ h\r\n",
		"é: ü, \xff\xfe: x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		nlines := bytes.Count(data, []byte("\n")) + 1
		as, ws := Parse("f", data, true)
		for _, a := range as {
			if a.Line < 1 || a.Line > nlines {
				t.Fatalf("alias %q on line %d of %d", a.Name, a.Line, nlines)
			}
			if a.Name != maps.FoldKey(a.Name, false) {
				t.Fatalf("name %q not folded", a.Name)
			}
			Targets(a.Value)
			if a.Value == "" {
				// "k: \" stores an empty value, as in Postfix,
				// which nothing reads back.
				continue
			}
			if strings.Contains(a.Value, "[") {
				// Domain literals are stored as Postfix stores
				// them, escapes removed, so "[a\]b]" does not
				// read back as one literal; Postfix has the same
				// asymmetry.
				continue
			}
			// A trailing backslash leaves an empty word, spelled as
			// a trailing space (Postfix stores "a \\" as "a "),
			// which reading back trims.
			again, _ := Parse("f", []byte("k: "+a.Value+"\n"), true)
			if len(again) != 1 || strings.TrimRight(again[0].Value, " ") != strings.TrimRight(a.Value, " ") {
				t.Fatalf("value %q reads back as %v", a.Value, again)
			}
		}
		for _, w := range ws {
			if w.Line < 1 || w.Line > nlines {
				t.Fatalf("warning %q on line %d of %d", w.String(), w.Line, nlines)
			}
		}
	})
}
