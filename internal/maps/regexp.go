package maps

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// This file holds what regexp_table(5) and pcre_table(5) share: the
// logical-line reader, the rule grammar (/pattern/flags result, !/pattern/,
// if ... endif), $number substitution and first-match lookup. The two
// dialects differ only in how a pattern and its flags become a Go regexp
// (regexp_posix.go, pcre.go).

// Warner is implemented by tables whose source file had problems that
// Postfix reports as warnings while still opening the table (a bad rule is
// skipped, not fatal). Open also passes each one to Options.Warn as it
// opens the table; Warner lets a caller such as "postfix check" ask again
// later. The text is Postfix's ("regexp map NAME, line N: ...").
type Warner interface {
	// Warnings returns the open-time warnings in the order Postfix prints
	// them, without the "program: warning: " prefix.
	Warnings() []string
}

// UnsupportedError reports a pattern construct that Postfix's regex
// library accepts but Go's RE2 engine cannot express (backreferences,
// lookaround, ...). Opening the table fails: silently skipping or
// reinterpreting such a rule would change mail policy without notice.
type UnsupportedError struct {
	Map       string // "regexp:/etc/postfix/x" or "pcre:/etc/postfix/x"
	Line      int    // first line of the rule's logical line
	Construct string // the offending text, such as "(?="
	What      string // its name, such as "lookahead"
	Hint      string // how to rewrite it
}

// Error names the table, line and construct first, so the message read in
// the mail log or from "postfix check" points straight at what to fix.
func (e *UnsupportedError) Error() string {
	s := fmt.Sprintf("%s line %d: %s %s is not supported by moat's RE2 engine", e.Map, e.Line, e.What, e.Construct)
	if e.Hint != "" {
		return s + "; " + e.Hint
	}
	return s + "; rewrite the pattern"
}

// unsupported is what a dialect's pattern translator returns for a
// construct RE2 cannot do; the table parser adds the map name and line.
type unsupported struct {
	construct, what, hint string
}

func (u *unsupported) Error() string { return u.what + " " + u.construct + " is not supported" }

// patternSyntaxError is a pattern Postfix itself would reject; the rule is
// skipped with a warning carrying the library-style message.
type patternSyntaxError struct{ msg string }

func (e *patternSyntaxError) Error() string { return e.msg }

// reDialect turns one /pattern/flags into a Go regexp.
type reDialect interface {
	// kind is "regexp" or "pcre", as in Postfix's messages.
	kind() string
	// flag applies one option letter to the flag state, returning
	// ok=false for an unknown letter, or a warning to print and go on.
	flag(st *reFlags, c byte) (warning string, ok bool)
	// compile translates and compiles pattern under st. An *unsupported
	// error may come with a non-nil regexp (a stand-in took the
	// construct's place) so that Postfix's later checks still run.
	compile(pattern string, st reFlags) (*regexp.Regexp, error)
	// secondPattern reports whether "/re1/!/re2/" is accepted.
	secondPattern() bool
}

// reFlags is the option state of one pattern. Each dialect uses the
// fields it knows; letters toggle them (regexp_table(5), pcre_table(5)).
type reFlags struct {
	icase, multiline, extended  bool // i, m, x
	dotall, anchored, dollarEnd bool // s, A, E (pcre)
	ungreedy                    bool // U (pcre)
}

const (
	opMatch = iota
	opIf
	opEndif
)

// replPart is one piece of a result: literal text, or a capture group.
type replPart struct {
	lit   string
	group int // 0 for literal
}

type reRule struct {
	op      int
	nesting int
	line    int
	re1     *regexp.Regexp
	match1  bool
	re2     *regexp.Regexp
	match2  bool
	repl    []replPart
	maxSub  int
}

// regexpTable is an open regexp: or pcre: table.
type regexpTable struct {
	rules []reRule
	patternBase
}

// patternBase is what regexp:, pcre: and cidr: tables share: they are
// pattern tables held in memory, keep the warnings their parse produced,
// and screen keys with Postfix's UTF-8 check.
type patternBase struct {
	warnings []string
	keyCheck utf8KeyCheck
}

func (t *patternBase) Pattern() bool      { return true }
func (t *patternBase) Close() error       { return nil }
func (t *patternBase) Warnings() []string { return t.warnings }

// finishOpen reports the parse's warnings and arms the key check for the
// table named spec.
func (t *patternBase) finishOpen(spec string, opts Options) {
	for _, w := range t.warnings {
		opts.warnf("%s", w)
	}
	t.keyCheck = newUTF8KeyCheck(spec, opts)
}

// ifStack follows IF/ENDIF nesting while a pattern table is parsed (regexp,
// pcre and cidr share the syntax): the lines of the IFs still open, so the
// depth of the next rule and the IFs left unclosed at the end are known.
type ifStack []int

func (s *ifStack) depth() int { return len(*s) }

// track records rule op found at line.
func (s *ifStack) track(op, line int) {
	switch op {
	case opIf:
		*s = append(*s, line)
	case opEndif:
		*s = (*s)[:len(*s)-1]
	}
}

// unclosed returns the lines of IFs without ENDIF, innermost first, the
// order Postfix warns in.
func (s ifStack) unclosed() []int {
	out := make([]int, 0, len(s))
	for i := len(s) - 1; i >= 0; i-- {
		out = append(out, s[i])
	}
	return out
}

// Lookup returns the result of the first rule that matches key, following
// Postfix's IF/ENDIF nesting: a rule is considered only when every
// enclosing IF matched.
func (t *regexpTable) Lookup(key string) (string, bool, error) {
	if !t.keyCheck.ok(key) {
		return "", false, nil
	}
	key = toByteRunes(key)
	nesting := 0
	for i := range t.rules {
		r := &t.rules[i]
		if nesting < r.nesting {
			continue
		}
		switch r.op {
		case opIf:
			if r.re1.MatchString(key) == r.match1 {
				nesting++
			}
		case opEndif:
			nesting--
		case opMatch:
			var sub []int
			if r.maxSub > 0 {
				sub = r.re1.FindStringSubmatchIndex(key)
				if sub == nil {
					continue
				}
			} else if r.re1.MatchString(key) != r.match1 {
				continue
			}
			if r.re2 != nil && r.re2.MatchString(key) != r.match2 {
				continue
			}
			return expandRepl(r.repl, key, sub), true, nil
		}
	}
	return "", false, nil
}

func expandRepl(parts []replPart, key string, sub []int) string {
	if len(parts) == 1 && parts[0].group == 0 {
		return parts[0].lit
	}
	var b strings.Builder
	for _, p := range parts {
		if p.group == 0 {
			b.WriteString(p.lit)
			continue
		}
		if 2*p.group+1 < len(sub) && sub[2*p.group] >= 0 {
			b.WriteString(fromByteRunes(key[sub[2*p.group]:sub[2*p.group+1]]))
		}
	}
	return b.String()
}

// Postfix runs in the C locale and its regex libraries match bytes: "."
// is one byte, [é] is a set of two bytes, case folding is ASCII only, and
// a table in Latin-1 is as valid as one in UTF-8. Go matches UTF-8
// characters, so both the pattern and the key are rewritten with every
// byte from 0x80 up standing for one Private Use Area character
// (U+F780..U+F7FF). Those have no case and belong to no class, exactly
// like high bytes in the C locale, and $n substitutions map them back.
const byteRuneBase = 0xF700

// toByteRunes maps the bytes of s from 0x80 up to their stand-ins.
func toByteRunes(s string) string {
	i := 0
	for i < len(s) && s[i] < 0x80 {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*(len(s)-i))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x80 {
			b.WriteByte(c)
		} else {
			b.WriteRune(byteRuneBase + rune(c))
		}
	}
	return b.String()
}

// fromByteRunes undoes toByteRunes.
func fromByteRunes(s string) string {
	i := 0
	for i < len(s) && s[i] < 0x80 {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for _, r := range s[i:] {
		if r >= byteRuneBase+0x80 && r <= byteRuneBase+0xff {
			b.WriteByte(byte(r - byteRuneBase))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// utf8KeyCheck is Postfix's dict_utf8 layer for pattern tables: with
// smtputf8_enable (Options.UTF8) a key that is not valid UTF-8 is not
// looked up at all; Postfix logs it and answers "not found".
type utf8KeyCheck struct {
	spec string
	warn func(string)
}

func newUTF8KeyCheck(spec string, opts Options) utf8KeyCheck {
	if !opts.UTF8 {
		return utf8KeyCheck{}
	}
	return utf8KeyCheck{spec: spec, warn: func(m string) { opts.warnf("%s", m) }}
}

func (c utf8KeyCheck) ok(key string) bool {
	if c.warn == nil || utf8.ValidString(key) {
		return true
	}
	var b strings.Builder
	for i := 0; i < len(key); {
		r, size := utf8.DecodeRuneInString(key[i:])
		if r == utf8.RuneError && size == 1 || r < 0x20 || r == 0x7f {
			b.WriteByte('?')
		} else {
			b.WriteString(key[i : i+size])
		}
		i += size
	}
	c.warn(fmt.Sprintf("%s: non-UTF-8 key \"%s\": malformed UTF-8 or invalid codepoint", c.spec, b.String()))
	return false
}

// readLogicalLines splits a pattern table's source with SourceLines and
// reports each orphan continuation through warn in the words regexp, pcre
// and cidr tables use: at most 30 bytes, non-printable bytes as '?'.
func readLogicalLines(path string, data []byte, warn func(string)) []SourceLine {
	lines, orphans := SourceLines(data)
	for _, o := range orphans {
		b := []byte(o.Text)
		suffix := ""
		if len(b) > 30 {
			b, suffix = b[:30], "..."
		}
		for i, c := range b {
			if c < 0x20 || c >= 0x7f {
				b[i] = '?'
			}
		}
		warn(fmt.Sprintf("%s: logical line must not start with whitespace: \"%s%s\"", path, b, suffix))
	}
	return lines
}

func reIsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func reIsAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func reSkipSpace(s string) string {
	for len(s) > 0 && reIsSpace(s[0]) {
		s = s[1:]
	}
	return s
}

// reParser carries the state of one table being parsed.
type reParser struct {
	d        reDialect
	name     string // map name as given (path)
	warnings []string
	err      error
	// pending is an unsupported construct in the rule being parsed. It
	// becomes err only if the rule passes every check Postfix makes, so
	// a rule Postfix would skip anyway gets Postfix's warning instead.
	pending *UnsupportedError
}

func (p *reParser) warnf(line int, format string, args ...any) {
	p.warnings = append(p.warnings, fmt.Sprintf("%s map %s, line %d: ", p.d.kind(), p.name, line)+fmt.Sprintf(format, args...))
}

// parseRegexpSource parses a whole regexp: or pcre: table. Bad rules are
// skipped with a warning, as Postfix does; a construct moat cannot match
// the way Postfix would is an *UnsupportedError.
func parseRegexpSource(d reDialect, name string, data []byte) (*regexpTable, error) {
	p := &reParser{d: d, name: name}
	t := &regexpTable{}
	var ifs ifStack
	lls := readLogicalLines(name, data, func(s string) { p.warnings = append(p.warnings, s) })
	for _, ll := range lls {
		text := strings.TrimRight(ll.Text, " \t\r\n\f\v")
		if text == "" {
			continue
		}
		r, ok := p.parseLine(ll.Num, text, ifs.depth())
		if p.err != nil {
			return nil, p.err
		}
		if !ok {
			continue
		}
		ifs.track(r.op, ll.Num)
		t.rules = append(t.rules, r)
	}
	for _, line := range ifs.unclosed() {
		p.warnf(line, "IF has no matching ENDIF")
	}
	t.warnings = p.warnings
	return t, nil
}

func (p *reParser) parseLine(line int, s string, nesting int) (reRule, bool) {
	p.pending = nil
	r, ok := p.parseStatement(line, s, nesting)
	if ok && p.pending != nil {
		p.err = p.pending
		return reRule{}, false
	}
	return r, ok
}

func (p *reParser) parseStatement(line int, s string, nesting int) (reRule, bool) {
	switch {
	case !reIsAlnum(s[0]):
		return p.parseMatch(line, s, nesting)
	case len(s) >= 2 && strings.EqualFold(s[:2], "if") && (len(s) == 2 || !reIsAlnum(s[2])):
		rest := reSkipSpace(s[2:])
		pat, match, flags, rest, ok := p.getPattern(line, rest)
		if !ok {
			return reRule{}, false
		}
		rest = reSkipSpace(rest)
		if rest != "" {
			p.warnf(line, "ignoring extra text after IF statement: \"%s\"", rest)
			p.warnf(line, "do not prepend whitespace to statements between IF and ENDIF")
		}
		re, ok := p.compile(line, pat, flags)
		if !ok {
			return reRule{}, false
		}
		return reRule{op: opIf, nesting: nesting, line: line, re1: re, match1: match}, true
	case len(s) >= 5 && strings.EqualFold(s[:5], "endif") && (len(s) == 5 || !reIsAlnum(s[5])):
		if nesting == 0 {
			p.warnf(line, "ignoring ENDIF without matching IF")
			return reRule{}, false
		}
		if reSkipSpace(s[5:]) != "" {
			p.warnf(line, "ignoring extra text after ENDIF")
		}
		return reRule{op: opEndif, nesting: nesting, line: line}, true
	}
	p.warnf(line, "ignoring unrecognized request")
	return reRule{}, false
}

func (p *reParser) parseMatch(line int, s string, nesting int) (reRule, bool) {
	pat1, match1, flags1, rest, ok := p.getPattern(line, s)
	if !ok {
		return reRule{}, false
	}
	var pat2 string
	var match2, have2 bool
	var flags2 reFlags
	if rest != "" && rest[0] == '!' && p.d.secondPattern() {
		pat2, match2, flags2, rest, ok = p.getPattern(line, rest)
		if !ok {
			return reRule{}, false
		}
		have2 = true
	}
	rest = reSkipSpace(rest)
	if rest == "" {
		p.warnf(line, "no replacement text: using empty string")
	}
	parts, maxSub, ok := p.parseReplacement(line, rest)
	if !ok {
		return reRule{}, false
	}
	if maxSub > 0 && !match1 {
		p.warnf(line, "$number found in negative match replacement text: skipping this rule")
		return reRule{}, false
	}
	re1, ok := p.compile(line, pat1, flags1)
	if !ok {
		return reRule{}, false
	}
	if maxSub > re1.NumSubexp() {
		p.warnf(line, "out of range replacement index \"%d\": skipping this rule", maxSub)
		return reRule{}, false
	}
	r := reRule{op: opMatch, nesting: nesting, line: line, re1: re1, match1: match1, repl: parts, maxSub: maxSub}
	if have2 {
		if r.re2, ok = p.compile(line, pat2, flags2); !ok {
			return reRule{}, false
		}
		r.match2 = match2
	}
	return r, true
}

// getPattern reads [!...]DELIM pattern DELIM flags from s, returning the
// rest of s after the flags.
func (p *reParser) getPattern(line int, s string) (pat string, match bool, st reFlags, rest string, ok bool) {
	match = true
	for len(s) > 0 && s[0] == '!' {
		match = !match
		s = s[1:]
	}
	s = reSkipSpace(s)
	if s == "" {
		p.warnf(line, "no regexp: skipping this rule")
		return "", false, st, "", false
	}
	delim := s[0]
	i := 1
	for ; i < len(s); i++ {
		if s[i] == '\\' {
			if i+1 < len(s) {
				i++
				continue
			}
			i = len(s)
			break
		}
		if s[i] == delim {
			break
		}
	}
	if i >= len(s) {
		verb := "skipping"
		if p.d.kind() == "pcre" {
			verb = "ignoring"
		}
		p.warnf(line, "no closing regexp delimiter \"%c\": %s this rule", delim, verb)
		return "", false, st, "", false
	}
	pat = s[1:i]
	s = s[i+1:]
	st = reFlags{icase: true, extended: true, dotall: true}
	for len(s) > 0 && !reIsSpace(s[0]) && (s[0] != '!' || !p.d.secondPattern()) {
		w, known := p.d.flag(&st, s[0])
		if !known {
			p.warnf(line, "unknown regexp option \"%c\": skipping this rule", s[0])
			return "", false, st, "", false
		}
		if w != "" {
			p.warnf(line, "%s", w)
		}
		s = s[1:]
	}
	return pat, match, st, s, true
}

func (p *reParser) compile(line int, pat string, st reFlags) (*regexp.Regexp, bool) {
	re, err := p.d.compile(pat, st)
	if err == nil {
		return re, true
	}
	var u *unsupported
	if errors.As(err, &u) {
		ue := &UnsupportedError{Map: p.d.kind() + ":" + p.name, Line: line, Construct: fromByteRunes(u.construct), What: u.what, Hint: u.hint}
		if re != nil {
			// A stand-in compiled: finish Postfix's checks first.
			if p.pending == nil {
				p.pending = ue
			}
			return re, true
		}
		p.err = ue
		return nil, false
	}
	p.warnf(line, "%s", err.Error())
	return nil, false
}

// parseReplacement splits a result into literal text and $number
// references with Postfix's mac_parse() rules: $$ is a dollar, $name,
// ${name} and $(name) are references whose name must be all digits.
func (p *reParser) parseReplacement(line int, s string) ([]replPart, int, bool) {
	var parts []replPart
	var lit strings.Builder
	maxSub := 0
	bad := func(format string, args ...any) ([]replPart, int, bool) {
		p.warnings = append(p.warnings, fmt.Sprintf(format, args...))
		p.warnf(line, "bad replacement syntax: skipping this rule")
		return nil, 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			lit.WriteByte(c)
			continue
		}
		i++
		var name string
		switch {
		case i < len(s) && s[i] == '$':
			lit.WriteByte('$')
			continue
		case i < len(s) && (s[i] == '{' || s[i] == '('):
			open, closeCh := s[i], byte('}')
			if open == '(' {
				closeCh = ')'
			}
			depth, j := 1, i+1
			for ; j < len(s); j++ {
				if s[j] == open {
					depth++
				} else if s[j] == closeCh {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			if j >= len(s) {
				return bad("truncated macro reference: \"%s\"", s)
			}
			name = s[i+1 : j]
			i = j
		default:
			j := i
			for j < len(s) && (reIsAlnum(s[j]) || s[j] == '_') {
				j++
			}
			name = s[i:j]
			i = j - 1
		}
		if name == "" {
			return bad("empty macro name: \"%s\"", s)
		}
		n, digits := 0, true
		for k := 0; k < len(name); k++ {
			if name[k] < '0' || name[k] > '9' {
				digits = false
				break
			}
			if n < 1000 {
				n = n*10 + int(name[k]-'0')
			}
		}
		if !digits {
			p.warnf(line, "non-numeric replacement index \"%s\"", name)
			p.warnf(line, "bad replacement syntax: skipping this rule")
			return nil, 0, false
		}
		if n < 1 {
			p.warnf(line, "out-of-range replacement index \"%s\"", name)
			p.warnf(line, "bad replacement syntax: skipping this rule")
			return nil, 0, false
		}
		if lit.Len() > 0 {
			parts = append(parts, replPart{lit: lit.String()})
			lit.Reset()
		}
		parts = append(parts, replPart{group: n})
		maxSub = max(maxSub, n)
	}
	if lit.Len() > 0 || len(parts) == 0 {
		parts = append(parts, replPart{lit: lit.String()})
	}
	return parts, maxSub, true
}

// openPatternFile reads a regexp or pcre table after the ownership and
// permission checks every table file gets.
func openPatternFile(d reDialect, name string, opts Options) (Table, error) {
	data, err := patternSource(d.kind(), name, opts)
	if err != nil {
		return nil, err
	}
	t, err := parseRegexpSource(d, name, data)
	if err != nil {
		return nil, err
	}
	t.finishOpen(d.kind()+":"+name, opts)
	return t, nil
}

// openRegexp opens a regexp_table(5) file: POSIX extended regular
// expressions, matched leftmost-longest as regexec(3) does.
func openRegexp(name string, opts Options) (Table, error) {
	return openPatternFile(posixDialect{}, name, opts)
}

// ParseRegexpTable parses regexp_table(5) source text (for tests, fuzzing
// and tools that already hold the bytes). name is used in messages.
func ParseRegexpTable(name string, data []byte) (Table, error) {
	return parseRegexpSource(posixDialect{}, name, data)
}
