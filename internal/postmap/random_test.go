package postmap_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// randomTable writes n random lines of alias (or postmap) syntax drawn from
// the characters the RFC 822 tokenizer and the line reader treat
// specially, so Postfix and moat are compared on inputs nobody wrote by
// hand.
func randomTable(seed uint64, n int, alias bool) string {
	r := rand.New(rand.NewPCG(seed, 0x6d6f6174))
	alpha := []string{"a", "b", "Z", " ", "\t", "\"", "\\", "(", ")", "<", ">", "@", ",", ";", ":",
		".", "[", "]", "!", "%", "|", "#", "\v", "\x01", "é", "x", "-", "/", "=", "\r", "İ", "ß", "\xff"}
	word := func(max int) string {
		var b strings.Builder
		for range r.IntN(max + 1) {
			b.WriteString(alpha[r.IntN(len(alpha))])
		}
		return b.String()
	}
	var b strings.Builder
	for i := range n {
		key := word(4)
		if r.IntN(10) < 7 {
			key = "k" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + string(rune('0'+i%10))
		}
		sep := ": "
		if !alias {
			sep = " "
		}
		if r.IntN(20) == 0 {
			sep = ""
		}
		if r.IntN(15) == 0 {
			key = " " + key // a continuation line
		}
		b.WriteString(key + sep + word(12) + "\n")
	}
	return b.String()
}

func TestDiffRandomTables(t *testing.T) {
	skipShort(t)
	w := setup(t)
	var steps []step
	for seed := uint64(1); seed <= 12; seed++ {
		for _, alias := range []bool{true, false} {
			prog, name := "postmap", "random-"+string(rune('a'+seed))+".map"
			if alias {
				prog, name = "postalias", "random-"+string(rune('a'+seed))+".aliases"
			}
			data := randomTable(seed, 300, alias)
			for _, d := range []string{w.pfx, w.moat} {
				if err := os.WriteFile(filepath.Join(d, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var keys []string
			for _, l := range strings.Split(data, "\n") {
				k, _, _ := strings.Cut(l, " ")
				k, _, _ = strings.Cut(k, ":")
				keys = append(keys, k, strings.ToUpper(k), strings.ToLower(k))
			}
			stdin := strings.Join(keys, "\n") + "\n"
			for _, utf8 := range []bool{false, true} {
				steps = append(steps,
					step{prog: prog, args: []string{name}, utf8: utf8},
					step{prog: prog, args: []string{"-s", name}, sorted: true, sortedErr: true, utf8: utf8},
					step{prog: prog, args: []string{"-q", "-", name}, stdin: stdin, utf8: utf8},
				)
			}
		}
	}
	n := script(t, "random", w, steps, false)
	t.Logf("%d random-table steps compared", n)
}
