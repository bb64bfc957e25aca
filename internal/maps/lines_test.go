package maps

import (
	"reflect"
	"testing"
)

// SourceLines is the one logical-line reader of every table format.
func TestSourceLines(t *testing.T) {
	src := "  orphan\n\tits continuation\n# comment\nkey value\n\n  # comment inside\n  more\nnext v\r\n   \nlast"
	lines, orphans := SourceLines([]byte(src))
	wantLines := []SourceLine{
		{Text: "key value  more", Num: 4},
		{Text: "next v\r", Num: 8},
		{Text: "last", Num: 10},
	}
	wantOrphans := []SourceLine{{Text: "  orphan\tits continuation", Num: 1}}
	if !reflect.DeepEqual(lines, wantLines) {
		t.Errorf("lines = %+v, want %+v", lines, wantLines)
	}
	if !reflect.DeepEqual(orphans, wantOrphans) {
		t.Errorf("orphans = %+v, want %+v", orphans, wantOrphans)
	}
	// ParseSource reports the orphan once for the whole logical line (and
	// "last", which has no value).
	_, err := ParseSource("f", []byte(src), true)
	les := LineErrors(err)
	if len(les) != 2 || les[0].Line != 1 || les[0].Orphan != "  orphan\tits continuation" || les[1].Line != 10 {
		t.Errorf("ParseSource errors = %+v", les)
	}
}
