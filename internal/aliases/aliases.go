// Package aliases parses aliases(5) files: "name: value, value" entries
// with continuation lines and comments, the input of postalias(1) and of
// local delivery. Names and values are tokenized as RFC 822 text the way
// Postfix's postalias does, so a file yields the same keys and the same
// stored values under moat as under Postfix.
package aliases

import (
	"fmt"
	"strings"

	"moat/internal/maps"
)

// Alias is one entry of an aliases file.
type Alias struct {
	// Name is the local part being aliased, quotes removed and (unless
	// folding was turned off) lowercased, as postalias stores it.
	Name string
	// Value is the right-hand side in Postfix's normalised spelling: a
	// comma-separated list whose elements are addresses, "|command",
	// "/file" or ":include:/file" (aliases(5)); see Targets.
	Value string
	// Line is the physical line the entry starts on.
	Line int
}

// Warning is a problem with one line; the line is skipped. String gives
// the text postalias prints after "postalias: warning: ".
type Warning struct {
	Path string
	Line int
	// Msg is the complaint; Orphan marks the warning about a line that
	// starts with whitespace, which Postfix words without a line number.
	Msg    string
	Orphan bool
}

func (w Warning) String() string {
	if w.Orphan {
		return fmt.Sprintf("%s: %s", w.Path, w.Msg)
	}
	return fmt.Sprintf("%s, line %d: %s", w.Path, w.Line, w.Msg)
}

// Parse reads an aliases(5) file. path names the file in warnings. fold
// lowercases names (ASCII only, like Postfix; postalias -f turns it off).
// Entries come back in file order, duplicates included: whether the first
// or last one wins is the caller's choice (postalias -r). Bad lines are
// skipped with a warning, never fatal, because postalias keeps going.
func Parse(path string, data []byte, fold bool) ([]Alias, []Warning) {
	lines, orphans := maps.SourceLines(data)
	var out []Alias
	var warns []Warning
	for _, o := range orphans {
		warns = append(warns, Warning{Path: path, Line: o.Num, Orphan: true,
			Msg: OrphanMessage(o.Text)})
	}
	for _, l := range lines {
		a, msg := parseLine(l.Text)
		if msg != "" {
			warns = append(warns, Warning{Path: path, Line: l.Num, Msg: msg})
			continue
		}
		if fold {
			a.Name = maps.FoldKey(a.Name, false)
		}
		a.Line = l.Num
		out = append(out, a)
	}
	sortWarnings(warns)
	return out, warns
}

// sortWarnings orders warnings by line (a stable insertion sort: orphans
// were collected apart from the others), so they print in file order.
func sortWarnings(w []Warning) {
	for i := 1; i < len(w); i++ {
		for j := i; j > 0 && w[j].Line < w[j-1].Line; j-- {
			w[j], w[j-1] = w[j-1], w[j]
		}
	}
}

// parseLine splits one logical line at its first ':' operator. The name
// must be one local part: a comma there means the line is not a
// name:value pair, and '@' or '%' means a remote address, which local
// delivery could never be asked for (postalias: "name must be local").
func parseLine(text string) (Alias, string) {
	toks := scan(text)
	colon := -1
	for i, t := range toks {
		if t.kind == operator && t.text == ":" {
			colon = i
			break
		}
	}
	if colon <= 0 || colon == len(toks)-1 {
		return Alias{}, "need name:value pair"
	}
	name := toks[:colon]
	for _, t := range name {
		if t.kind == operator && t.text == "," {
			return Alias{}, "need name:value pair"
		}
	}
	for _, t := range name {
		if t.kind == operator && (t.text == "@" || t.text == "%") {
			return Alias{}, "name must be local"
		}
	}
	return Alias{Name: render(name, false), Value: render(toks[colon+1:], true)}, ""
}

// Targets splits an alias value into its elements at the commas that are
// not inside quotes, comments or brackets, for local delivery. Each element
// keeps its spelling ("|cmd", "/file", ":include:/path", an address); empty
// elements are dropped.
func Targets(value string) []string {
	var out []string
	var cur []token
	flush := func() {
		if len(cur) > 0 {
			out = append(out, strings.TrimSpace(render(cur, true)))
		}
		cur = nil
	}
	for _, t := range scan(value) {
		if t.kind == operator && t.text == "," {
			flush()
			continue
		}
		cur = append(cur, t)
	}
	flush()
	return out
}

// OrphanMessage is Postfix's complaint about a logical line that starts
// with whitespace: it quotes at most 30 bytes of it, then "...".
func OrphanMessage(text string) string {
	if len(text) > 30 {
		text = text[:30] + "..."
	}
	// Control characters must not reach a log line.
	b := []byte(text)
	for i, c := range b {
		if c < ' ' || c == 0x7f {
			b[i] = '?'
		}
	}
	text = string(b)
	return fmt.Sprintf("logical line must not start with whitespace: \"%s\"", text)
}
