package aliases

import "bytes"

// Line is one logical line of a Postfix table source file: physical lines
// joined with their continuations. aliases(5) and postmap(1) share this
// syntax ("a line that starts with whitespace continues a logical line"), so
// postmap reads its input through the same reader and both commands agree
// on what a continuation or comment is.
type Line struct {
	// Text is the logical line without its newlines; continuation lines
	// are appended as they are, leading whitespace included, because
	// Postfix keeps that whitespace inside values.
	Text string
	// Num is the number of the physical line the logical line starts on,
	// the number Postfix's warnings cite.
	Num int
}

// Lines splits data into logical lines the way Postfix's table readers do:
// blank lines and lines whose first non-blank character is '#' are skipped
// wherever they appear (also between a line and its continuation), and a
// line starting with whitespace continues the previous one. A continuation
// with nothing to continue is reported through bad, named by its text, and
// dropped; Postfix warns "logical line must not start with whitespace".
func Lines(data []byte) (lines []Line, bad []Line) {
	var cur []byte
	start, num := 0, 0
	have, orphan := false, false
	flush := func() {
		if !have {
			return
		}
		l := Line{Text: string(cur), Num: start}
		if orphan {
			bad = append(bad, l)
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
		rest := bytes.TrimLeft(phys, spaces)
		if len(rest) == 0 || rest[0] == '#' {
			continue
		}
		if len(rest) < len(phys) {
			if !have {
				// Nothing to continue: Postfix reports the whole
				// logical line this starts and skips it.
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
	return lines, bad
}

// spaces are the bytes C's isspace() accepts in the "C" locale, which is
// what Postfix uses to find keys, values and continuations.
const spaces = " \t\n\v\f\r"

// IsSpace reports whether c is whitespace as Postfix's table readers see it.
func IsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// TrimSpace strips Postfix whitespace (see IsSpace) from both ends of s.
func TrimSpace(s string) string {
	i, j := 0, len(s)
	for i < j && IsSpace(s[i]) {
		i++
	}
	for j > i && IsSpace(s[j-1]) {
		j--
	}
	return s[i:j]
}
