package maps

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The PCRE-to-RE2 translator: it walks a Perl-compatible pattern the way
// PCRE2 parses it, copies what Go reads the same way, rewrites what Go
// spells differently, and notes what RE2 cannot do (see pcreDialect).

// pcreTranslator is the state of one walk over a pattern.
type pcreTranslator struct {
	src      string
	extended bool
	out      strings.Builder
	pending  *unsupported // first construct RE2 cannot do
	refs     []pcreRef
	depth    int // open groups: PCRE2 reports a stray ")" where it stands
	captures int // capture groups opened so far (decides \10: group or octal)
	// canRepeat is false where PCRE2 refuses a quantifier: at the
	// start, after "(" or "|", after an anchor or assertion. Go would
	// accept "^*" or "\b?" and match something Postfix never loads.
	canRepeat bool
}

// quantifier checks that a quantifier at src offset i has something to
// repeat.
func (t *pcreTranslator) quantifier(i int) error {
	if !t.canRepeat {
		return &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: quantifier does not follow a repeatable item", i)}
	}
	return nil
}

// translatePCRE rewrites a pattern (already passed through toByteRunes)
// into Go syntax. As with translatePOSIX, a syntax error anywhere wins
// over an unsupported construct, which comes back as an *unsupported
// error together with a translation that has a stand-in for it.
func translatePCRE(src string, extended bool) (string, error) {
	goPat, _, err := translatePCRERefs(src, extended)
	return goPat, err
}

// pcreRef is a backreference, by number or name, at offset off; the
// stand-in compiled in its place cannot say whether the group exists.
type pcreRef struct {
	num  int
	name string
	off  int
}

func translatePCRERefs(src string, extended bool) (string, []pcreRef, error) {
	t := &pcreTranslator{src: src, extended: extended}
	if err := t.run(); err != nil {
		return "", nil, err
	}
	if t.pending != nil {
		return t.out.String(), t.refs, t.pending
	}
	return t.out.String(), t.refs, nil
}

// note records an unsupported construct and lets the walk go on.
func (t *pcreTranslator) note(construct, what, hint string) {
	if t.pending == nil {
		t.pending = &unsupported{construct: construct, what: what, hint: hint}
	}
}

// skipGroup consumes a construct that ends at the next ")" (a verb,
// recursion, callout, named backreference), leaving stand-in in its place.
func (t *pcreTranslator) skipGroup(s, standIn string) (int, error) {
	end := strings.IndexByte(s, ')')
	if end < 0 {
		return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: missing closing parenthesis", len(t.src))}
	}
	t.out.WriteString(standIn)
	return end + 1, nil
}

func (t *pcreTranslator) run() error {
	s := t.src
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case t.extended && reIsSpace(c):
			i++
		case t.extended && c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '\\':
			n, err := t.escape(i, false)
			if err != nil {
				return err
			}
			t.canRepeat = i+1 >= len(s) || strings.IndexByte("bBAzZGK", s[i+1]) < 0
			i += n
		case c == '[':
			n, err := t.class(i)
			if err != nil {
				return err
			}
			t.canRepeat = true
			i += n
		case c == '(':
			n, err := t.group(i)
			if err != nil {
				return err
			}
			i += n
		case c == ')':
			if t.depth == 0 {
				return &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: unmatched closing parenthesis", i)}
			}
			t.depth--
			t.out.WriteByte(c)
			t.canRepeat = true
			i++
		case c == '|' || c == '^' || c == '$':
			t.out.WriteByte(c)
			t.canRepeat = false
			i++
		case c == '*' || c == '+' || c == '?':
			if err := t.quantifier(i); err != nil {
				return err
			}
			t.out.WriteByte(c)
			i++
			i += t.afterQuantifier(i, s[i-1:i])
		case c == '{':
			if n := quantifierLen(s[i:]); n > 0 {
				if err := t.quantifier(i + n - 1); err != nil {
					return err
				}
				body := s[i+1 : i+n-1]
				q := s[i : i+n]
				for _, part := range strings.Split(body, ",") {
					if v, err := strconv.Atoi(part); err == nil && v > 1000 {
						t.note(q, "repeat count", repeatHint)
						q = "*"
					}
				}
				t.out.WriteString(q)
				i += n
				i += t.afterQuantifier(i, s[i-n:i])
				break
			}
			t.out.WriteString(`\{`)
			t.canRepeat = true
			i++
		default:
			t.canRepeat = true
			r, size := utf8.DecodeRuneInString(s[i:])
			if r >= utf8.RuneSelf {
				t.out.WriteString(regexp.QuoteMeta(string(r)))
			} else {
				t.out.WriteByte(c)
			}
			i += size
		}
	}
	return nil
}

// quantifierLen returns the length of a {n}, {n,} or {n,m} quantifier at
// the start of s, or 0 when the brace is a literal (PCRE2 10.42).
func quantifierLen(s string) int {
	j := 1
	digits := func() int {
		k := j
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		return j - k
	}
	if digits() == 0 {
		return 0
	}
	if j < len(s) && s[j] == ',' {
		j++
		digits()
	}
	if j < len(s) && s[j] == '}' {
		return j + 1
	}
	return 0
}

// afterQuantifier copies a lazy "?" or notes a possessive "+" after
// quantifier q, returning the bytes it consumed. No further quantifier
// may follow (PCRE2 refuses "a**" and "a+?+" alike).
func (t *pcreTranslator) afterQuantifier(i int, q string) int {
	t.canRepeat = false
	switch {
	case i < len(t.src) && t.src[i] == '?':
		t.out.WriteByte('?')
		return 1
	case i < len(t.src) && t.src[i] == '+':
		t.note(q+"+", "possessive quantifier", "drop the trailing + (RE2 never backtracks, so the greedy form usually matches the same keys)")
		return 1
	}
	return 0
}

// group handles "(" at s[i].
func (t *pcreTranslator) group(i int) (int, error) {
	s := t.src[i:]
	lookaround := map[string]string{"(?=": "lookahead", "(?!": "negative lookahead", "(?<=": "lookbehind", "(?<!": "negative lookbehind",
		"(*pla:": "lookahead", "(*nla:": "negative lookahead", "(*plb:": "lookbehind", "(*nlb:": "negative lookbehind"}
	for _, p := range []string{"(?<=", "(?<!", "(?=", "(?!", "(*pla:", "(*nla:", "(*plb:", "(*nlb:"} {
		if strings.HasPrefix(s, p) {
			t.note(p, lookaround[p], "rewrite the pattern (an if/endif block can often express the condition)")
			t.out.WriteString("(?:")
			t.depth++
			return len(p), nil
		}
	}
	switch {
	case strings.HasPrefix(s, "(*"):
		if len(s) < 3 || !(s[2] >= 'A' && s[2] <= 'Z' || s[2] >= 'a' && s[2] <= 'z' || s[2] == '_' || s[2] == ':') {
			return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: (*VERB) not recognized or malformed", i+2)}
		}
		end := strings.IndexByte(s, ')')
		if end < 0 {
			end = len(s) - 1
		}
		t.note(s[:min(end+1, 12)], "verb or option setting", "remove it")
		return t.skipGroup(s, "")
	case !strings.HasPrefix(s, "(?"):
		t.out.WriteByte('(')
		t.canRepeat = false
		t.depth++
		t.captures++
		return 1, nil
	case strings.HasPrefix(s, "(?#"):
		end := strings.IndexByte(s, ')')
		if end < 0 {
			return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: missing ) at end of (?# comment", len(t.src))}
		}
		return end + 1, nil
	case strings.HasPrefix(s, "(?>"):
		t.note("(?>", "atomic group", "use a plain group (?:...)")
		t.out.WriteString("(?:")
		t.depth++
		return 3, nil
	case strings.HasPrefix(s, "(?|"):
		t.note("(?|", "branch reset group", "number the groups separately")
		t.out.WriteString("(?:")
		t.depth++
		return 3, nil
	case strings.HasPrefix(s, "(?("):
		t.note("(?(", "conditional group", "use if/endif blocks in the table")
		n, err := t.skipGroup(s[2:], "(?:")
		t.depth++
		return 2 + n, err
	case strings.HasPrefix(s, "(?P="):
		t.note("(?P=", "named backreference", "RE2 cannot match repeated text")
		name, end, err := t.groupName(i+4, ')')
		if err != nil {
			return 0, err
		}
		t.refs = append(t.refs, pcreRef{name: name, off: i + 4})
		t.out.WriteString("(?:)")
		return end + 1 - i, nil
	case strings.HasPrefix(s, "(?P>"), strings.HasPrefix(s, "(?&"), strings.HasPrefix(s, "(?R"),
		len(s) > 2 && (s[2] >= '0' && s[2] <= '9'),
		len(s) > 3 && (s[2] == '+' || s[2] == '-') && s[3] >= '0' && s[3] <= '9':
		t.note(s[:min(len(s), 4)], "recursion or subroutine call", "rewrite the pattern without it")
		return t.skipGroup(s, "(?:)")
	case strings.HasPrefix(s, "(?C"):
		t.note("(?C", "callout", "remove it")
		return t.skipGroup(s, "")
	case strings.HasPrefix(s, "(?+"):
		return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: digit expected after (?+ or (?-", i+2)}
	case strings.HasPrefix(s, "(?<"), strings.HasPrefix(s, "(?P<"), strings.HasPrefix(s, "(?'"):
		start, term := 3, byte('>')
		if s[2] == 'P' {
			start = 4
		} else if s[2] == '\'' {
			term = '\''
		}
		name, end, err := t.groupName(i+start, term)
		if err != nil {
			return 0, err
		}
		t.out.WriteString("(?P<" + name + ">")
		t.depth++
		t.captures++
		return end + 1 - i, nil
	case strings.HasPrefix(s, "(?:"):
		t.out.WriteString("(?:")
		t.depth++
		return 3, nil
	}
	// Inline option setting: (?imsU-imsU) or (?imsU-imsU:...).
	j := 2
	for j < len(s) && s[j] != ')' && s[j] != ':' {
		switch s[j] {
		case 'i', 'm', 's', 'U', '-':
		case 'x', 'n', 'J', 'X', '^':
			t.note("(?"+s[2:j+1], "inline option", "use the table's flags after the closing delimiter instead")
			for j < len(s) && s[j] != ')' && s[j] != ':' {
				j++
			}
			switch {
			case j == len(s):
				return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: missing closing parenthesis", len(t.src))}
			case s[j] == ':':
				t.out.WriteString("(?:")
				t.depth++
			}
			return j + 1, nil
		default:
			return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: unrecognized character after (? or (?-", i+j)}
		}
		j++
	}
	if j == len(s) {
		return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: missing closing parenthesis", len(t.src))}
	}
	if s[j] == ':' {
		t.depth++
		t.canRepeat = false
	}
	if j > 2 {
		// "(?)" sets nothing; Go would reject the empty form.
		t.out.WriteString(s[:j+1])
	} else if s[j] == ':' {
		t.out.WriteString("(?:")
	}
	return j + 1, nil
}

// escape handles a backslash at s[i], inside a character class or not.
func (t *pcreTranslator) escape(i int, inClass bool) (int, error) {
	s := t.src
	if i+1 >= len(s) {
		return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: \\ at end of pattern", len(s))}
	}
	c := s[i+1]
	switch {
	case c >= '1' && c <= '9' && !inClass:
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(s[i+1 : min(j, i+6)])
		if n >= 10 && c <= '7' && n > t.captures {
			// pcre2pattern(3): not a group that exists yet, so up to
			// three octal digits.
			k := i + 1
			for k < len(s) && k < i+4 && s[k] >= '0' && s[k] <= '7' {
				k++
			}
			v, _ := strconv.ParseUint(s[i+1:k], 8, 32)
			cu, err := pcreCodeUnit(v, i)
			if err != nil {
				return 0, err
			}
			t.out.WriteString(cu)
			return k - i, nil
		}
		t.note(s[i:j], "backreference", "RE2 cannot match repeated text; rewrite the pattern without it")
		t.refs = append(t.refs, pcreRef{num: n, off: i + 1})
		t.out.WriteString("(?:)")
		return j - i, nil
	case c >= '0' && c <= '7':
		j := i + 1
		for j < len(s) && j < i+4 && s[j] >= '0' && s[j] <= '7' {
			j++
		}
		v, _ := strconv.ParseUint(s[i+1:j], 8, 32)
		cu, err := pcreCodeUnit(v, i)
		if err != nil {
			return 0, err
		}
		t.out.WriteString(cu)
		return j - i, nil
	case (c == 'g' || c == 'k') && !inClass:
		if c == 'g' && i+2 < len(s) && (s[i+2] == '<' || s[i+2] == '\'') {
			t.note(s[i:i+3], "subroutine call", "rewrite the pattern without it")
		} else {
			t.note(s[i:min(len(s), i+3)], "backreference", "RE2 cannot match repeated text; rewrite the pattern without it")
		}
		j := i + 2
		bad := func() (int, error) {
			what := "name"
			if c == 'g' {
				what = "name/number or by a plain number"
			}
			return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: \\%c is not followed by a braced, angle-bracketed, or quoted %s", i+2, c, what)}
		}
		ref, refOff := "", i+2
		if j < len(s) && (s[j] == '{' || s[j] == '<' || s[j] == '\'') {
			refOff = j + 1
			closer := map[byte]byte{'{': '}', '<': '>', '\'': '\''}[s[j]]
			numeric := c == 'g' && j+1 < len(s) && (s[j+1] == '-' || s[j+1] == '+' || s[j+1] >= '0' && s[j+1] <= '9')
			if numeric {
				k := strings.IndexByte(s[j+1:], closer)
				if k < 0 {
					return bad()
				}
				ref = s[j+1 : j+1+k]
				j += k + 2
			} else {
				name, end, err := t.groupName(j+1, closer)
				if err != nil {
					return 0, err
				}
				ref = name
				j = end + 1
			}
		} else if c == 'g' {
			if j < len(s) && (s[j] == '-' || s[j] == '+') {
				j++
			}
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			ref = s[i+2 : j]
			if ref == "" || ref == "-" || ref == "+" {
				return bad()
			}
		} else {
			return bad()
		}
		if n, err := strconv.Atoi(ref); err == nil {
			if n > 0 {
				t.refs = append(t.refs, pcreRef{num: n, off: refOff})
			}
		} else if ref[0] != '-' && ref[0] != '+' {
			t.refs = append(t.refs, pcreRef{name: ref, off: refOff})
		}
		t.out.WriteString("(?:)")
		return j - i, nil
	case (c == 'K' || c == 'G') && !inClass:
		if c == 'K' {
			t.note(`\K`, "match reset", "rewrite the pattern without it")
		} else {
			t.note(`\G`, "end-of-previous-match anchor", "use ^ or \\A")
		}
	case (c == 'X' || c == 'C') && !inClass:
		t.note(s[i:i+2], "escape", "match characters explicitly")
		t.out.WriteString("(?:)")
	case c == 'Z':
		t.out.WriteString(`\z`)
	case c == 'e':
		t.out.WriteString(`\x{1b}`)
	case c == 'c':
		if i+2 >= len(s) || s[i+2] >= utf8.RuneSelf {
			return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: \\c at end of pattern", len(s))}
		}
		x := s[i+2]
		if x >= 'a' && x <= 'z' {
			x -= 'a' - 'A'
		}
		t.out.WriteString(fmt.Sprintf(`\x{%x}`, x^0x40))
		return 3, nil
	case c == 'o':
		end := strings.IndexByte(s[i:], '}')
		if i+2 >= len(s) || s[i+2] != '{' || end < 0 {
			return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: missing opening brace after \\o", i+2)}
		}
		v, err := strconv.ParseUint(s[i+3:i+end], 8, 21)
		if err != nil {
			return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: non-octal character in \\o{} (closing brace missing?)", i+3)}
		}
		cu, err := pcreCodeUnit(v, i+end)
		if err != nil {
			return 0, err
		}
		t.out.WriteString(cu)
		return end + 1, nil
	case c == 'x':
		if i+2 < len(s) && s[i+2] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: missing terminating }", len(s))}
			}
			v, err := strconv.ParseUint(s[i+3:i+end], 16, 32)
			if err != nil {
				return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: non-hex character in \\x{} (closing brace missing?)", i+3)}
			}
			cu, err := pcreCodeUnit(v, i+end)
			if err != nil {
				return 0, err
			}
			t.out.WriteString(cu)
			return end + 1, nil
		}
		j := i + 2
		for j < len(s) && j < i+4 && pcreIsHex(s[j]) {
			j++
		}
		v := uint64(0)
		if j > i+2 {
			v, _ = strconv.ParseUint(s[i+2:j], 16, 8)
		}
		cu, _ := pcreCodeUnit(v, j)
		t.out.WriteString(cu)
		return j - i, nil
	case c == 'h':
		t.out.WriteString(classOrInline(pcreHSpace, false, inClass))
	case c == 'H':
		if inClass {
			t.note(`\H`, "negated class escape inside []", "use [^...] instead")
			t.out.WriteString(`\x{0}`)
			break
		}
		t.out.WriteString(classOrInline(pcreHSpace, true, false))
	case c == 'v':
		t.out.WriteString(classOrInline(pcreVSpace, false, inClass))
	case c == 'V':
		if inClass {
			t.note(`\V`, "negated class escape inside []", "use [^...] instead")
			t.out.WriteString(`\x{0}`)
			break
		}
		t.out.WriteString(classOrInline(pcreVSpace, true, false))
	case c == 'R' && !inClass:
		t.out.WriteString(`(?:\r\n|[` + pcreVSpace + `])`)
	case c == 'N' && !inClass:
		if i+2 < len(s) && s[i+2] == '{' {
			t.note(`\N{`, "named character", `use \x{...}`)
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: missing terminating }", len(s))}
			}
			t.out.WriteString("(?:)")
			return end + 1, nil
		}
		t.out.WriteString(`[^\n]`)
	case c == 'b' && inClass:
		t.out.WriteString(`\x{8}`)
	case c == 'E':
		// A stray \E is ignored by PCRE.
	case c == 'Q':
		end := strings.Index(s[i+2:], `\E`)
		lit := s[i+2:]
		n := len(s) - i
		if end >= 0 {
			lit = s[i+2 : i+2+end]
			n = 2 + end + 2
		}
		for _, r := range lit {
			if inClass {
				t.out.WriteString(reClassRune(r))
			} else {
				t.out.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		return n, nil
	case c == 'p' || c == 'P':
		if i+2 < len(s) && s[i+2] == '{' {
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: malformed \\P or \\p sequence", len(s))}
			}
			t.out.WriteString(s[i : i+end+1])
			return end + 1, nil
		}
		if i+2 >= len(s) || strings.IndexByte("CLMNPSZ", s[i+2]) < 0 {
			what := "malformed \\P or \\p sequence"
			if i+2 < len(s) && reIsAlnum(s[i+2]) {
				what = "unknown property after \\P or \\p"
			}
			return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: %s", min(i+3, len(s)), what)}
		}
		r, size := utf8.DecodeRuneInString(s[i+2:])
		t.out.WriteString(s[i:i+2] + "{" + string(r) + "}")
		return 2 + size, nil
	case c == 's':
		t.out.WriteString(classOrInline(pcreSpace, false, inClass))
	case c == 'S':
		if inClass {
			t.out.WriteString(pcreNotSpace)
		} else {
			t.out.WriteString("[" + pcreNotSpace + "]")
		}
	case strings.IndexByte("aftnrdDwW", c) >= 0 || !inClass && strings.IndexByte("bBAz", c) >= 0:
		t.out.WriteString(s[i : i+2])
	case c < utf8.RuneSelf && reIsAlnum(c):
		return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: unrecognized character follows \\", i+2)}
	default:
		r, size := utf8.DecodeRuneInString(s[i+1:])
		if inClass {
			t.out.WriteString(reClassRune(r))
		} else {
			t.out.WriteString(regexp.QuoteMeta(string(r)))
		}
		return 1 + size, nil
	}
	return 2, nil
}

// groupName reads a group name that starts at src[start] and ends with
// term, with PCRE2's checks and messages; it returns the name and the
// index of the terminator.
func (t *pcreTranslator) groupName(start int, term byte) (string, int, error) {
	s := t.src
	word := func(c byte) bool { return reIsAlnum(c) || c == '_' }
	switch {
	case start >= len(s) || !word(s[start]):
		return "", 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: subpattern name expected", start)}
	case s[start] >= '0' && s[start] <= '9':
		return "", 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: subpattern name must start with a non-digit", start)}
	}
	j := start
	for j < len(s) && word(s[j]) {
		j++
	}
	if j-start > 32 {
		return "", 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: subpattern name is too long (maximum 32 code units)", j)}
	}
	if j >= len(s) || s[j] != term {
		return "", 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: syntax error in subpattern name (missing terminator?)", j)}
	}
	return s[start:j], j, nil
}

// pcreCodeUnit spells a character code from \x, \o or an octal escape.
// Postfix's PCRE runs without UTF mode, so codes are bytes: up to 0xff,
// those from 0x80 up written as their toByteRunes stand-ins.
func pcreCodeUnit(v uint64, off int) (string, error) {
	switch {
	case v > 0xff:
		return "", &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: character code point value in \\x{} or \\o{} is too large", off)}
	case v >= 0x80:
		return fmt.Sprintf(`\x{%x}`, byteRuneBase+v), nil
	}
	return fmt.Sprintf(`\x{%x}`, v), nil
}

// Character sets of PCRE2's escapes without UTF mode, where they match
// bytes (0x85 and 0xa0 as their toByteRunes stand-ins). Go's \s lacks
// the vertical tab that PCRE2's includes.
const (
	pcreSpace    = `\t\n\x{b}\f\r `
	pcreNotSpace = `\x{0}-\x{8}\x{e}-\x{1f}\x{21}-\x{10ffff}`
	pcreHSpace   = `\t \x{f7a0}`
	pcreVSpace   = `\n\x{b}\f\r\x{f785}`
)

func pcreIsHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// classOrInline spells a set of characters as a class of its own, or as
// bare members when already inside one.
func classOrInline(members string, neg, inClass bool) string {
	if inClass {
		return members
	}
	if neg {
		return "[^" + members + "]"
	}
	return "[" + members + "]"
}

// class handles a character class starting at s[i] == '['.
func (t *pcreTranslator) class(i int) (int, error) {
	s := t.src
	j := i + 1
	t.out.WriteByte('[')
	if j < len(s) && s[j] == '^' {
		t.out.WriteByte('^')
		j++
	}
	if j < len(s) && s[j] == ']' {
		t.out.WriteString(`\]`)
		j++
	}
	for j < len(s) {
		c := s[j]
		switch {
		case c == ']':
			t.out.WriteByte(']')
			return j + 1 - i, nil
		case c == '\\':
			n, err := t.escape(j, true)
			if err != nil {
				return 0, err
			}
			j += n
		case c == '[' && j+1 < len(s) && (s[j+1] == ':' || s[j+1] == '.' || s[j+1] == '='):
			end := strings.Index(s[j+2:], string(s[j+1])+"]")
			if end < 0 {
				t.out.WriteString(`\[`)
				j++
				break
			}
			item := s[j : j+2+end+2]
			if s[j+1] != ':' || item == "[:<:]" || item == "[:>:]" {
				t.note(item, "POSIX collating element or word boundary", `use \b outside the class`)
				t.out.WriteString(`\x{0}`)
				j += len(item)
				break
			}
			t.out.WriteString(item)
			j += len(item)
		case c == '[':
			t.out.WriteString(`\[`)
			j++
		default:
			r, size := utf8.DecodeRuneInString(s[j:])
			if r == '-' || r == '^' {
				t.out.WriteByte(byte(r))
			} else {
				t.out.WriteString(reClassRune(r))
			}
			j += size
		}
	}
	return 0, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: missing terminating ] for character class", len(s))}
}
