package maps

import "bytes"

// SourceLine is one logical line of a table source file: physical lines
// joined with their continuations.
type SourceLine struct {
	// Text is the logical line without its newlines; continuation lines
	// are appended as they are, leading whitespace included, because
	// Postfix keeps that whitespace inside values.
	Text string
	// Num is the number of the physical line the logical line starts on,
	// the number Postfix's warnings cite.
	Num int
}

// SourceLines splits a table source into logical lines the way Postfix's
// readllines() does for every table format (postmap(1) input, aliases(5),
// regexp_table(5), pcre_table(5), cidr_table(5)): blank lines and lines
// whose first non-blank character is '#' are skipped wherever they appear
// (also between a line and its continuation), and a line starting with
// whitespace continues the previous one. A continuation with nothing to
// continue starts an orphan logical line, returned in orphans with its own
// continuations; Postfix warns "logical line must not start with
// whitespace" and skips it.
func SourceLines(data []byte) (lines, orphans []SourceLine) {
	var cur []byte
	start, num := 0, 0
	have, orphan := false, false
	flush := func() {
		if !have {
			return
		}
		l := SourceLine{Text: string(cur), Num: start}
		if orphan {
			orphans = append(orphans, l)
		} else {
			lines = append(lines, l)
		}
		cur, have, orphan = nil, false, false
	}
	for len(data) > 0 {
		var phys []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			phys, data = data[:i], data[i+1:]
		} else {
			phys, data = data, nil
		}
		num++
		rest := bytes.TrimLeft(phys, " \t\n\v\f\r")
		if len(rest) == 0 || rest[0] == '#' {
			continue
		}
		if len(rest) < len(phys) {
			if !have {
				have, orphan, start = true, true, num
			}
			cur = append(cur, phys...)
			continue
		}
		flush()
		cur = append(cur[:0:0], phys...)
		have, start = true, num
	}
	flush()
	return lines, orphans
}
