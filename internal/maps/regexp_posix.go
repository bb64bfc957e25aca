package maps

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"unicode/utf8"
)

// posixDialect is regexp_table(5): Postfix hands the pattern to regcomp(3)
// with REG_EXTENDED|REG_ICASE, the i/m/x flags toggling REG_ICASE,
// REG_NEWLINE and REG_EXTENDED. moat translates the POSIX pattern into
// Go's syntax instead of passing it through, because the two differ:
//
//   - In a bracket expression a backslash is an ordinary character
//     ("[\.]" matches a backslash or a dot); Go would read an escape.
//   - "a**", "a{2}{3}" and "a+?" stack quantifiers in POSIX ("a+?" is
//     "(a+)?", not a lazy "a+"); Go rejects or reinterprets them, so the
//     quantified atom is wrapped in a group first.
//   - "{,n}" means "{0,n}"; a lone ")" is a literal; "\`" and "\'" anchor
//     at the start and end of the string.
//   - regexec(3) returns the leftmost-longest match, which decides what
//     $1..$9 capture: the Go regexp is switched to Longest().
//   - Without the m flag "." and "[^x]" match a newline (Go needs (?s));
//     with it they do not, and ^/$ match at line boundaries.
//   - With x toggled off the pattern is a basic regular expression
//     (\( \) \{ \} groups and intervals, + ? | literal).
//
// Matching is by byte, as in Postfix's C locale (see toByteRunes).
//
// Constructs Go cannot match (backreferences \1..\9, the word anchors \<
// and \>, repeat counts above 1000) are refused with an
// *UnsupportedError; a multi-character collating element is the same
// error as in the C locale. An escaped letter with no GNU meaning (such as "\d",
// which glibc silently matches as nothing) is refused too, so that a rule
// never quietly does something other than what its author meant.
type posixDialect struct{}

func (posixDialect) kind() string        { return "regexp" }
func (posixDialect) secondPattern() bool { return true }

func (posixDialect) flag(st *reFlags, c byte) (string, bool) {
	switch c {
	case 'i':
		st.icase = !st.icase
	case 'm':
		st.multiline = !st.multiline
	case 'x':
		st.extended = !st.extended
	default:
		return "", false
	}
	return "", true
}

func (posixDialect) compile(pattern string, st reFlags) (*regexp.Regexp, error) {
	goPat, err := translatePOSIX(toByteRunes(pattern), st.extended, st.multiline, st.icase)
	var pending *unsupported
	if err != nil && !errors.As(err, &pending) {
		return nil, err
	}
	prefix := "(?s)"
	if st.multiline {
		prefix = "(?m)"
	}
	if st.icase {
		prefix += "(?i)"
	}
	re, err := regexp.Compile(prefix + goPat)
	if err != nil {
		var se *syntax.Error
		if errors.As(err, &se) && se.Code == syntax.ErrInvalidRepeatSize {
			return nil, &unsupported{construct: se.Expr, what: "repeat count", hint: repeatHint}
		}
		return nil, &patternSyntaxError{msg: err.Error()}
	}
	re.Longest()
	if pending != nil {
		return re, pending
	}
	return re, nil
}

// repeatHint explains RE2's limit: each count, and the product of nested
// counts such as (a{100}){100}, must stay within 1000.
const repeatHint = "RE2 allows at most 1000 repetitions, nested counts multiplied"

// glibc's regerror(3) texts, which Postfix prints after the map and line.
const (
	posixErrParen     = `Unmatched ( or \(`
	posixErrBracket   = "Unmatched [, [^, [:, [., or [="
	posixErrPreceding = "Invalid preceding regular expression"
	posixErrBraceBody = `Invalid content of \{\}`
	posixErrBrace     = `Unmatched \{`
	posixErrBackslash = "Trailing backslash"
	posixErrRange     = "Invalid range end"
	posixErrClass     = "Invalid character class name"
	// The C locale has no multi-character collating elements.
	posixErrCollate = "Invalid collation character"
)

// posixTranslator walks one POSIX pattern and writes the Go equivalent.
type posixTranslator struct {
	src       string
	ere       bool
	newline   bool // REG_NEWLINE: [^x] must not match \n
	icase     bool // REG_ICASE: range ends compare case-folded
	out       strings.Builder
	atomStart int  // where the last quantifiable atom begins in out, -1 if none
	quantif   bool // the last atom already carries a quantifier
	groups    []int
	closed    int          // groups completed so far (backreferences need one)
	pending   *unsupported // first construct RE2 cannot do
}

// translatePOSIX returns the Go spelling of a POSIX pattern. A syntax
// error wins over an unsupported construct anywhere in the pattern, as
// Postfix would skip such a rule with a warning; when the only problem is
// unsupported, the translation (with a stand-in for each such construct)
// comes back together with the *unsupported error, so the caller can
// still check what Postfix checks after compiling.
func translatePOSIX(src string, ere, newline, icase bool) (string, error) {
	t := &posixTranslator{src: src, ere: ere, newline: newline, icase: icase, atomStart: -1}
	if err := t.run(); err != nil {
		return "", err
	}
	if t.pending != nil {
		return t.out.String(), t.pending
	}
	return t.out.String(), nil
}

// note records an unsupported construct and lets the walk go on.
func (t *posixTranslator) note(construct, what, hint string) {
	if t.pending == nil {
		t.pending = &unsupported{construct: construct, what: what, hint: hint}
	}
}

func (t *posixTranslator) atom(text string) {
	t.atomStart = t.out.Len()
	t.quantif = false
	t.out.WriteString(text)
}

func (t *posixTranslator) noAtom(text string) {
	t.atomStart = -1
	t.quantif = false
	t.out.WriteString(text)
}

// quantify applies q to the last atom, grouping it first when it already
// has a quantifier (POSIX stacks them; Go would not).
func (t *posixTranslator) quantify(q string) error {
	if t.atomStart < 0 {
		return &patternSyntaxError{msg: posixErrPreceding}
	}
	if t.quantif && !t.ere {
		// glibc stacks quantifiers only in extended REs.
		return &patternSyntaxError{msg: posixErrPreceding}
	}
	if t.quantif {
		s := t.out.String()
		t.out.Reset()
		t.out.WriteString(s[:t.atomStart])
		t.out.WriteString("(?:")
		t.out.WriteString(s[t.atomStart:])
		t.out.WriteString(")")
	}
	t.out.WriteString(q)
	t.quantif = true
	return nil
}

func (t *posixTranslator) run() error {
	s := t.src
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return &patternSyntaxError{msg: posixErrBackslash}
			}
			n, err := t.escape(i)
			if err != nil {
				return err
			}
			i += n
			continue
		case c == '[':
			n, err := t.bracket(i)
			if err != nil {
				return err
			}
			i += n
			continue
		case c == '.':
			t.atom(".")
		case c == '*':
			// A leading "*" (or one after "(" / "|") is a literal in a
			// basic RE and an error in an extended one.
			if t.atomStart < 0 && !t.ere {
				t.atom(`\*`)
				break
			}
			if err := t.quantify("*"); err != nil {
				return err
			}
		case t.ere && (c == '+' || c == '?'):
			if err := t.quantify(string(c)); err != nil {
				return err
			}
		case t.ere && c == '{':
			n, err := t.interval(i + 1)
			if err != nil {
				return err
			}
			i += 1 + n
			continue
		case t.ere && c == '(':
			t.openGroup()
		case t.ere && c == ')':
			if len(t.groups) == 0 {
				t.atom(`\)`)
				break
			}
			t.closeGroup()
		case t.ere && c == '|':
			t.noAtom("|")
		case c == '^':
			if t.ere || t.anchorStartOK(i) {
				t.noAtom("^")
			} else {
				t.atom(`\^`)
			}
		case c == '$':
			if t.ere || t.anchorEndOK(i) {
				t.noAtom("$")
			} else {
				t.atom(`\$`)
			}
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			t.atom(regexp.QuoteMeta(string(r)))
			i += size
			continue
		}
		i++
	}
	if len(t.groups) > 0 {
		return &patternSyntaxError{msg: posixErrParen}
	}
	return nil
}

func (t *posixTranslator) openGroup() {
	t.groups = append(t.groups, t.out.Len())
	t.noAtom("(")
}

func (t *posixTranslator) closeGroup() {
	start := t.groups[len(t.groups)-1]
	t.groups = t.groups[:len(t.groups)-1]
	t.out.WriteString(")")
	t.atomStart = start
	t.quantif = false
	t.closed++
}

// anchorStartOK: in a basic RE "^" anchors only at the start of the
// pattern or of a group or alternative.
func (t *posixTranslator) anchorStartOK(i int) bool {
	return i == 0 || strings.HasSuffix(t.src[:i], `\(`) || strings.HasSuffix(t.src[:i], `\|`)
}

// anchorEndOK: in a basic RE "$" anchors only at the end of the pattern
// or before "\)" or "\|".
func (t *posixTranslator) anchorEndOK(i int) bool {
	rest := t.src[i+1:]
	return rest == "" || strings.HasPrefix(rest, `\)`) || strings.HasPrefix(rest, `\|`)
}

// interval parses the bound of "{m}", "{m,}", "{m,n}" or "{,n}" starting
// at s[i] (after the opening brace) and applies it, returning the bytes
// consumed. It reads the bound token by token as glibc does, so a
// malformed one gets the same message: "Unmatched \{" when the pattern
// ends first, "Invalid content of \{\}" otherwise.
func (t *posixTranslator) interval(i int) (int, error) {
	if t.atomStart < 0 {
		return 0, &patternSyntaxError{msg: posixErrPreceding}
	}
	j := i
	var last intervalToken
	fetch := func() int {
		num := -1
		for {
			var n int
			last, n = t.intervalToken(j)
			j += n
			switch {
			case last == tokEnd:
				return -2
			case last == tokClose || last == tokComma:
				return num
			case last >= '0' && last <= '9' && num != -2:
				num = max(num, 0)*10 + int(last-'0')
				if num > 0x7fff { // RE_DUP_MAX
					num = -2
				}
			default:
				num = -2
			}
		}
	}
	lo := fetch()
	hi := -2
	if lo == -1 {
		if last != tokComma {
			return 0, &patternSyntaxError{msg: posixErrBraceBody} // "{}"
		}
		lo = 0
	}
	if lo != -2 {
		switch last {
		case tokClose:
			hi = lo
		case tokComma:
			hi = fetch() // -1 for "{m,}"
		}
	}
	if lo == -2 || hi == -2 {
		if last == tokEnd {
			return 0, &patternSyntaxError{msg: posixErrBrace}
		}
		return 0, &patternSyntaxError{msg: posixErrBraceBody}
	}
	if hi != -1 && lo > hi || last != tokClose {
		return 0, &patternSyntaxError{msg: posixErrBraceBody}
	}
	if lo > 1000 || hi > 1000 {
		t.note("{"+t.src[i:j], "repeat count", repeatHint)
		lo, hi = min(lo, 1000), min(hi, 1000)
	}
	q := "{" + strconv.Itoa(lo)
	switch {
	case hi < 0:
		q += ","
	case hi != lo:
		q += "," + strconv.Itoa(hi)
	}
	if err := t.quantify(q + "}"); err != nil {
		return 0, err
	}
	return j - i, nil
}

// intervalToken classifies the token at s[j] inside an interval: the
// closing brace, a comma, an unescaped digit (its byte), the end of the
// pattern, or anything else; it returns the token's length.
type intervalToken int

const (
	tokEnd intervalToken = -1 - iota
	tokClose
	tokComma
	tokOther
)

func (t *posixTranslator) intervalToken(j int) (intervalToken, int) {
	s := t.src
	switch {
	case j >= len(s):
		return tokEnd, 0
	case s[j] == '\\' && j+1 < len(s):
		switch {
		case !t.ere && s[j+1] == '}':
			return tokClose, 2
		case s[j+1] == ',':
			return tokComma, 2
		}
		_, size := utf8.DecodeRuneInString(s[j+1:])
		return tokOther, 1 + size
	case t.ere && s[j] == '}':
		return tokClose, 1
	case s[j] == ',':
		return tokComma, 1
	case s[j] >= '0' && s[j] <= '9':
		return intervalToken(s[j]), 1
	}
	_, size := utf8.DecodeRuneInString(s[j:])
	return tokOther, size
}

func reAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// escape handles "\c" at s[i:], returning the bytes consumed.
func (t *posixTranslator) escape(i int) (int, error) {
	c := t.src[i+1]
	if !t.ere {
		switch c {
		case '(':
			t.openGroup()
			return 2, nil
		case ')':
			if len(t.groups) == 0 {
				// glibc words an unmatched \) like an unmatched \(.
				return 0, &patternSyntaxError{msg: posixErrParen}
			}
			t.closeGroup()
			return 2, nil
		case '{':
			n, err := t.interval(i + 2)
			return 2 + n, err
		case '}':
			t.atom(`\}`)
			return 2, nil
		case '|':
			t.noAtom("|")
			return 2, nil
		case '+', '?':
			// GNU extensions in basic REs; with nothing to repeat they
			// are literals, like a leading "*".
			if t.atomStart < 0 {
				t.atom(`\` + string(c))
				return 2, nil
			}
			return 2, t.quantify(string(c))
		}
	}
	switch {
	case c >= '1' && c <= '9':
		if int(c-'0') > t.closed {
			return 0, &patternSyntaxError{msg: "Invalid back reference"}
		}
		t.note(t.src[i:i+2], "backreference", "RE2 cannot match repeated text; rewrite the pattern without it")
		t.atom("(?:)")
	case c == '<' || c == '>':
		t.note(t.src[i:i+2], "word anchor", `use \b instead`)
		t.noAtom("")
	case c == 'w' || c == 'W':
		t.atom(t.src[i : i+2])
	case c == 's':
		// GNU \s is [[:space:]], which has the vertical tab Go's \s lacks.
		t.atom(`[[:space:]]`)
	case c == 'S':
		if t.newline {
			t.atom(`[^[:space:]\n]`)
		} else {
			t.atom(`[^[:space:]]`)
		}
	case c == 'b' || c == 'B':
		t.noAtom(t.src[i : i+2])
	case c == '`':
		t.noAtom(`\A`)
	case c == '\'':
		t.noAtom(`\z`)
	case c < utf8.RuneSelf && (reIsAlnum(c)):
		t.note(t.src[i:i+2], "escape", "it has no meaning in a POSIX regular expression (Postfix's regex library matches nothing for it); use a bracket expression such as [0-9] or [[:space:]]")
		t.atom("(?:)")
	default:
		r, size := utf8.DecodeRuneInString(t.src[i+1:])
		t.atom(regexp.QuoteMeta(string(r)))
		return 1 + size, nil
	}
	return 2, nil
}

var posixClasses = map[string]bool{
	"alnum": true, "alpha": true, "blank": true, "cntrl": true, "digit": true, "graph": true,
	"lower": true, "print": true, "punct": true, "space": true, "upper": true, "xdigit": true,
}

// bracket translates the bracket expression starting at s[i] == '['.
func (t *posixTranslator) bracket(i int) (int, error) {
	s := t.src
	j := i + 1
	var b strings.Builder
	b.WriteByte('[')
	neg := false
	if j < len(s) && s[j] == '^' {
		neg = true
		b.WriteByte('^')
		j++
	}
	if j == len(s) {
		// glibc's message for "[" or "[^" at the very end.
		return 0, &patternSyntaxError{msg: "Invalid regular expression"}
	}
	first := true
	for {
		if j >= len(s) {
			return 0, &patternSyntaxError{msg: posixErrBracket}
		}
		if s[j] == ']' && !first {
			j++
			break
		}
		first = false
		// A class, collating element or equivalence class.
		if s[j] == '[' && j+1 < len(s) && (s[j+1] == ':' || s[j+1] == '.' || s[j+1] == '=') {
			kind := s[j+1]
			end := strings.Index(s[j+2:], string(kind)+"]")
			if end < 0 {
				return 0, &patternSyntaxError{msg: posixErrBracket}
			}
			name := s[j+2 : j+2+end]
			j += 2 + end + 2
			if kind == ':' {
				if !posixClasses[name] {
					return 0, &patternSyntaxError{msg: posixErrClass}
				}
				if j+1 < len(s) && s[j] == '-' && s[j+1] != ']' {
					t.note("[:"+name+":]-", "range starting at a character class", "list the characters instead")
				}
				b.WriteString("[:" + name + ":]")
				continue
			}
			r, size := utf8.DecodeRuneInString(name)
			if name == "" || size != len(name) {
				return 0, &patternSyntaxError{msg: posixErrCollate}
			}
			n, err := t.classRange(s, j, r, &b)
			if err != nil {
				return 0, err
			}
			j = n
			continue
		}
		r, size := utf8.DecodeRuneInString(s[j:])
		n, err := t.classRange(s, j+size, r, &b)
		if err != nil {
			return 0, err
		}
		j = n
	}
	if neg && t.newline {
		b.WriteString(`\n`)
	}
	b.WriteByte(']')
	t.atom(b.String())
	return j - i, nil
}

// classRange writes lo, or lo-hi when s[j:] continues with "-x" (x not
// the closing bracket), and returns the new position.
func (t *posixTranslator) classRange(s string, j int, lo rune, b *strings.Builder) (int, error) {
	if j+1 < len(s) && s[j] == '-' && s[j+1] != ']' {
		var hi rune
		var size int
		if s[j+1] == '[' && j+2 < len(s) && (s[j+2] == '.' || s[j+2] == '=') {
			kind := s[j+2]
			end := strings.Index(s[j+3:], string(kind)+"]")
			if end < 0 {
				return 0, &patternSyntaxError{msg: posixErrBracket}
			}
			name := s[j+3 : j+3+end]
			r, sz := utf8.DecodeRuneInString(name)
			if name == "" || sz != len(name) {
				return 0, &patternSyntaxError{msg: posixErrCollate}
			}
			hi, size = r, 3+end+2
		} else if s[j+1] == '[' && j+2 < len(s) && s[j+2] == ':' {
			return 0, &patternSyntaxError{msg: posixErrRange}
		} else {
			hi, size = utf8.DecodeRuneInString(s[j+1:])
		}
		if t.icase {
			// glibc compares the ends of a range case-folded to upper
			// case under REG_ICASE: [_-z] is an error, [0-A] also
			// matches "a".
			lo, hi = asciiUpper(lo), asciiUpper(hi)
		}
		if hi < lo {
			return 0, &patternSyntaxError{msg: posixErrRange}
		}
		b.WriteString(reClassRune(lo) + "-" + reClassRune(hi))
		return j + 1 + size, nil
	}
	b.WriteString(reClassRune(lo))
	return j, nil
}

// classRune spells r so that Go reads it literally inside brackets.
func reClassRune(r rune) string {
	switch {
	case r < 0x80 && reIsAlnum(byte(r)):
		return string(r)
	case r < 0x20 || r == 0x7f || r == ' ':
		return fmt.Sprintf(`\x{%x}`, r)
	case r < 0x80:
		return `\` + string(r)
	}
	return string(r)
}

func asciiUpper(r rune) rune {
	if r >= 'a' && r <= 'z' {
		return r - ('a' - 'A')
	}
	return r
}
