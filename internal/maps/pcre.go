package maps

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
)

// pcreDialect is pcre_table(5) on Go's RE2 engine. Perl syntax is mostly
// shared, so the pattern is passed through a checker (CheckPCRE) that
// refuses what RE2 cannot do, naming the construct, and rewrites the few
// spellings Go lacks (\e, \cX, \o{}, octal \0nn, \h, \v, \R, \N, (?#...),
// (?'name'...), the x flag's whitespace and comments).
//
// Flags (pcre_table(5) "TABLE FORMAT"): i (on by default), m, s (on by
// default), x, A (anchored: the pattern is wrapped in \A(?:...)), E, U,
// and X, which PCRE2 dropped and Postfix ignores with a warning.
//
// Known differences from PCRE, each harmless for Postfix's keys:
//   - "$" without the m flag matches only at the very end of the key,
//     where PCRE also matches before a final newline; \Z is read as \z.
//     Keys Postfix looks up (addresses, header lines without their line
//     end, client names) never end in a newline, so E is implied.
//   - \p{...} Unicode properties see bytes from 0x80 up as unassigned
//     (see toByteRunes), where PCRE without UTF mode reads them as
//     Latin-1 code points.
//   - A repeat count above 1000 is refused (RE2's limit; PCRE allows
//     65535).
//   - A pattern PCRE2 rejects is skipped with a warning as in Postfix,
//     "error in regex at offset N: ...", but for some errors (a range out
//     of order inside a class, an escape invalid in a class, a group
//     left open deep inside) the offset or wording differs.
type pcreDialect struct{}

func (pcreDialect) kind() string        { return "pcre" }
func (pcreDialect) secondPattern() bool { return false }

func (pcreDialect) flag(st *reFlags, c byte) (string, bool) {
	switch c {
	case 'i':
		st.icase = !st.icase
	case 'm':
		st.multiline = !st.multiline
	case 's':
		st.dotall = !st.dotall
	case 'x':
		st.extended = !st.extended
	case 'A':
		st.anchored = !st.anchored
	case 'E':
		st.dollarEnd = !st.dollarEnd
	case 'U':
		st.ungreedy = !st.ungreedy
	case 'X':
		return `ignoring obsolete regexp option "X"`, true
	default:
		return "", false
	}
	return "", true
}

func (pcreDialect) compile(pattern string, st reFlags) (*regexp.Regexp, error) {
	// reFlags.extended starts true for the POSIX dialect's REG_EXTENDED;
	// for PCRE the x flag toggles it off from that default, so "x given"
	// is !extended.
	pattern = toByteRunes(pattern)
	goPat, refs, err := translatePCRERefs(pattern, !st.extended)
	var pending *unsupported
	if err != nil && !errors.As(err, &pending) {
		return nil, err
	}
	prefix := ""
	if st.icase {
		prefix += "(?i)"
	}
	if st.multiline {
		prefix += "(?m)"
	}
	if st.dotall {
		prefix += "(?s)"
	}
	if st.ungreedy {
		prefix += "(?U)"
	}
	full := prefix + goPat
	if st.anchored {
		full = prefix + `\A(?:` + goPat + ")"
	}
	re, err := regexp.Compile(full)
	if err != nil {
		return nil, pcreCompileError(pattern, err)
	}
	// PCRE2 resolves backreferences after the whole pattern is read;
	// one to a group that does not exist is a compile error.
	for _, r := range refs {
		if r.num > re.NumSubexp() || r.name != "" && !slices.Contains(re.SubexpNames(), r.name) {
			return nil, &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: reference to non-existent subpattern", r.off)}
		}
	}
	if pending != nil {
		return re, pending
	}
	return re, nil
}

// pcreCompileError rewords Go's parse error as PCRE2 would put it
// ("error in regex at offset N: ..."), so log watchers see one format.
func pcreCompileError(pattern string, err error) error {
	var se *syntax.Error
	if !errors.As(err, &se) {
		return &patternSyntaxError{msg: "error in regex: " + err.Error()}
	}
	off := len(pattern)
	if k := strings.Index(pattern, se.Expr); k >= 0 && se.Expr != "" {
		off = k + len(se.Expr)
	}
	msg := string(se.Code)
	switch se.Code {
	case syntax.ErrMissingParen:
		msg, off = "missing closing parenthesis", len(pattern)
	case syntax.ErrUnexpectedParen:
		msg = "unmatched closing parenthesis"
		if k := strings.LastIndexByte(pattern, ')'); k >= 0 {
			off = k
		}
	case syntax.ErrMissingBracket:
		msg, off = "missing terminating ] for character class", len(pattern)
	case syntax.ErrMissingRepeatArgument, syntax.ErrInvalidRepeatOp:
		msg = "quantifier does not follow a repeatable item"
	case syntax.ErrInvalidRepeatSize:
		if strings.Contains(err.Error(), "invalid repeat count") {
			return &unsupported{construct: se.Expr, what: "repeat count", hint: repeatHint}
		}
		msg = "numbers out of order in {} quantifier"
	case syntax.ErrInvalidEscape:
		msg = "unrecognized character follows \\"
	case syntax.ErrTrailingBackslash:
		msg = "\\ at end of pattern"
	case syntax.ErrInvalidCharRange:
		msg = "range out of order in character class"
	case syntax.ErrInvalidCharClass:
		msg = "unknown POSIX class name"
	case syntax.ErrInvalidNamedCapture:
		msg = "syntax error in subpattern name (missing terminator?)"
	case syntax.ErrInvalidPerlOp:
		msg = "unrecognized character after (? or (?-"
	case syntax.ErrNestingDepth, syntax.ErrLarge:
		msg = "regular expression is too large"
	}
	return &patternSyntaxError{msg: fmt.Sprintf("error in regex at offset %d: %s", off, msg)}
}

// CheckPCRE reports the first construct in a Perl-compatible pattern that
// moat's RE2 engine cannot match (backreferences, lookaround, atomic
// groups, possessive quantifiers, recursion, conditionals, verbs, \K, \G
// ...), or nil. extended is the x flag. It is what makes a pcre: table
// fail to open instead of silently misreading a rule; postmap and
// "moat postfix check" can use it to lint header_checks.
func CheckPCRE(pattern string, extended bool) error {
	_, err := pcreDialect{}.compile(pattern, reFlags{icase: true, extended: !extended, dotall: true})
	var u *unsupported
	if errors.As(err, &u) {
		return err
	}
	return nil
}

// openPCRE opens a pcre_table(5) file on Go's RE2 engine.
func openPCRE(name string, opts Options) (Table, error) {
	return openPatternFile(pcreDialect{}, name, opts)
}

// ParsePCRETable parses pcre_table(5) source text (for tests, fuzzing and
// tools that already hold the bytes). name is used in messages.
func ParsePCRETable(name string, data []byte) (Table, error) {
	return parseRegexpSource(pcreDialect{}, name, data)
}
