package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Expansion status bits, the values Postfix's mac_expand(3) returns and its
// test driver prints as "stat=N": callers treat StatError as a configuration
// error and may ignore StatUndef (an undefined $name expands to nothing).
const (
	StatError = 1 // syntax error or runaway recursion
	StatUndef = 2 // a $name without a value was referenced
)

// maxNesting bounds recursive expansion so `a = $b`, `b = $a` is reported
// instead of recursing forever; Postfix uses the same limit of 100.
const maxNesting = 100

// LookupFunc returns a parameter's raw (unexpanded) value; ok is false when
// the name has no value at all.
type LookupFunc func(name string) (value string, ok bool)

// Expander expands Postfix macro syntax (postconf(5), "$name", "${name?value}",
// "${name:value}", "${{a} op {b}?{x}:{y}}"). It is a value type holding one
// expansion's state, not a shared global.
type Expander struct {
	Lookup LookupFunc
	// Recurse expands the values of referenced names too, as main.cf
	// does; the mac_expand test vectors turn it off.
	Recurse bool
	// Warn receives each diagnostic in Postfix's words (without a
	// "prog: warning: " prefix). Nil discards them.
	Warn func(msg string)
	// Refs, when set, turns expansion into a scan, as Postfix's postconf
	// scans main.cf values: Refs is called for every $name in every branch
	// of conditionals, and a "$" before a non-name character is only a
	// warning. With Lookup also set, names expand to their values so
	// comparisons (such as "<level") are still checked.
	Refs func(name string)
	// Suffixes are the relational operator suffixes accepted, as
	// registered with Postfix's mac_expand_add_relop(): main.cf knows only
	// "level" (compatibility levels), which nil means; Postfix's
	// mac_expand test driver registers "length".
	Suffixes []string

	status int
	depth  int
	steps  int
}

// maxSteps bounds the work of one expansion: a main.cf such as
// "a = $b$b$b$b", "b = $c$c$c$c", ... would otherwise grow exponentially.
// No real configuration comes near it.
const maxSteps = 1 << 20

// Expand returns s with every macro replaced, and the status bits.
func (e *Expander) Expand(s string) (string, int) {
	e.status = 0
	e.depth = 0
	e.steps = 0
	var out strings.Builder
	e.expand(&out, s)
	return out.String(), e.status
}

// References calls fn for every parameter name s refers to, in all branches
// of conditionals, and reports whether s parses.
func References(s string, fn func(name string)) bool {
	e := &Expander{Refs: fn}
	_, st := e.Expand(s)
	return st&StatError == 0
}

func (e *Expander) warnf(format string, args ...any) {
	e.status |= StatError
	if e.Warn != nil {
		e.Warn(fmt.Sprintf(format, args...))
	}
}

func isNameChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

func first20(s string) string {
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

// expand scans literal text and macro references, as mac_parse(3) does;
// it stops at the first syntax error, keeping what it produced so far.
func (e *Expander) expand(out *strings.Builder, s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' {
			j := strings.IndexByte(s[i:], '$')
			if j < 0 {
				j = len(s) - i
			}
			out.WriteString(s[i : i+j])
			i += j
			continue
		}
		i++
		if i >= len(s) {
			e.warnf("empty macro name: \"%s\"", s)
			return false
		}
		switch c = s[i]; {
		case c == '$':
			out.WriteByte('$')
			i++
		case c == '{' || c == '(':
			open, close := c, byte('}')
			if c == '(' {
				close = ')'
			}
			level := 1
			j := i + 1
			for ; j < len(s) && level > 0; j++ {
				switch s[j] {
				case open:
					level++
				case close:
					level--
				}
			}
			if level > 0 {
				e.warnf("truncated macro reference: \"%s\"", s)
				return false
			}
			if j-1 == i+1 {
				e.warnf("empty macro name: \"%s\"", s)
				return false
			}
			if !e.expr(out, s[i+1:j-1]) {
				return false
			}
			i = j
		case isNameChar(c):
			j := i
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			if !e.name(out, s[i:j]) {
				return false
			}
			i = j
		default:
			if e.Refs != nil {
				if e.Warn != nil {
					e.Warn(fmt.Sprintf("empty macro name: \"%s\"", s))
				}
				out.WriteByte('$')
				continue
			}
			e.warnf("empty macro name: \"%s\"", s)
			return false
		}
	}
	return true
}

// name expands a plain $name reference.
func (e *Expander) name(out *strings.Builder, name string) bool {
	if e.steps++; e.steps > maxSteps || out.Len() > maxSteps {
		e.warnf("macro expansion too large at: \"%s\"", name)
		return false
	}
	if e.Refs != nil {
		e.Refs(name)
		if e.Lookup != nil {
			sub := &Expander{Lookup: e.Lookup, Recurse: true}
			v, _ := sub.Expand("$" + "{" + name + "}")
			out.WriteString(v)
		}
		return true
	}
	v, ok := e.Lookup(name)
	if !ok {
		e.status |= StatUndef
		return true
	}
	if !e.Recurse {
		out.WriteString(v)
		return true
	}
	if e.depth >= maxNesting {
		e.warnf("unreasonable macro call nesting: \"%s\"", name)
		return false
	}
	e.depth++
	ok = e.expand(out, v)
	e.depth--
	return ok
}

// sub expands a nested text (a conditional's value or a relational
// operand) with the same lookup and nesting depth.
func (e *Expander) sub(s string) (string, bool) {
	var b strings.Builder
	ok := e.expand(&b, s)
	return b.String(), ok
}

// expr handles the inside of ${...} or $(...).
func (e *Expander) expr(out *strings.Builder, s string) bool {
	i := skipSpace(s, 0)
	if i < len(s) && s[i] == '{' {
		return e.relational(out, s, i)
	}
	start := i
	for i < len(s) && isNameChar(s[i]) {
		i++
	}
	name := s[start:i]
	j := skipSpace(s, i)
	// Postfix looks up an all-blank name ("${ }") as the empty name
	// rather than calling it a syntax error.
	if name == "" && j < len(s) || j < len(s) && s[j] != '?' && s[j] != ':' {
		e.warnf("attribute name syntax error at: \"...%s>>>%s\"", s[:i], first20(s[i:]))
		return false
	}
	if j == len(s) {
		return e.name(out, name)
	}
	var cond bool
	if e.Refs != nil {
		e.Refs(name)
	} else {
		// A test only asks whether the raw value is non-empty.
		v, ok := e.Lookup(name)
		cond = ok && v != ""
	}
	return e.conditional(out, s, j, cond, "")
}

// braced returns the payload of the {...} starting at s[i] and the index
// after its closing brace.
func (e *Expander) braced(s string, i int) (string, int, bool) {
	level := 0
	for j := i; j < len(s); j++ {
		switch s[j] {
		case '{':
			level++
		case '}':
			level--
			if level == 0 {
				return s[i+1 : j], j + 1, true
			}
		}
	}
	e.warnf("unmatched '{' at: \"...>>>%s\"", first20(s[i:]))
	return "", 0, false
}

// conditional handles "?value", ":value", "?{x}:{y}" starting at s[i] (the
// operator character). cond selects the '?' branch. The chosen text is
// expanded before trailing garbage is reported, matching the vectors.
func (e *Expander) conditional(out *strings.Builder, s string, i int, cond bool, _ string) bool {
	op := s[i]
	emit := func(text string, selected bool) bool {
		if e.Refs == nil && !selected {
			return true
		}
		v, ok := e.sub(text)
		if e.Refs == nil {
			out.WriteString(v)
		}
		return ok
	}
	takeFirst := cond == (op == '?')
	j := skipSpace(s, i+1)
	if j >= len(s) || s[j] != '{' {
		return emit(s[i+1:], takeFirst)
	}
	payload, k, ok := e.braced(s, j)
	if !ok {
		return false
	}
	if !emit(payload, takeFirst) {
		return false
	}
	k = skipSpace(s, k)
	if k == len(s) {
		return true
	}
	if op == ':' {
		e.warnf("unexpected input at: \"...%s}>>>%s\"", payload, first20(s[k:]))
		return false
	}
	if s[k] != ':' {
		e.warnf("\":\" expected at: \"...%s}>>>%s\"", payload, first20(s[k:]))
		return false
	}
	m := skipSpace(s, k+1)
	if m >= len(s) || s[m] != '{' {
		return emit(s[k+1:], !cond)
	}
	payload2, n, ok := e.braced(s, m)
	if !ok {
		return false
	}
	if !emit(payload2, !cond) {
		return false
	}
	if n = skipSpace(s, n); n < len(s) {
		e.warnf("unexpected input at: \"...%s}>>>%s\"", payload2, first20(s[n:]))
		return false
	}
	return true
}

const opExpected = `"==" or "!="" or "<"" or "<="" or ">="" or ">" expected`

// relational handles "{a} op {b}" with an optional conditional tail; a
// bare comparison yields "true" or "".
func (e *Expander) relational(out *strings.Builder, s string, i int) bool {
	lhs, j, ok := e.braced(s, i)
	if !ok {
		return false
	}
	j = skipSpace(s, j)
	k := j
	for k < len(s) && strings.IndexByte("=!<>", s[k]) >= 0 {
		k++
	}
	op := s[j:k]
	m := k
	for m < len(s) && (s[m] >= 'a' && s[m] <= 'z' || s[m] >= 'A' && s[m] <= 'Z') {
		m++
	}
	suffix := s[k:m]
	switch op {
	case "==", "!=", "<", "<=", ">=", ">":
	default:
		e.warnf("%s at: \"...%s}>>>%s\"", opExpected, lhs, first20(s[j:]))
		return false
	}
	if suffix != "" && !e.suffixOK(suffix) {
		e.warnf("bad operator suffix at: \"...%s>>>%s\"", op, suffix)
		return false
	}
	n := skipSpace(s, m)
	if n >= len(s) || s[n] != '{' {
		e.warnf("\"{expression}\" expected at: \"...{%s} %s>>>%s\"", lhs, op+suffix, first20(s[m:]))
		return false
	}
	rhs, p, ok := e.braced(s, n)
	if !ok {
		return false
	}
	p = skipSpace(s, p)
	if p < len(s) && s[p] != '?' && s[p] != ':' {
		e.warnf("\"?\" or \":\" expected at: \"...}>>>%s\"", first20(s[p:]))
		return false
	}
	var cond bool
	if e.Refs != nil && e.Lookup == nil {
		e.sub(lhs)
		e.sub(rhs)
	} else {
		l, ok := e.sub(lhs)
		if !ok {
			return false
		}
		r, ok := e.sub(rhs)
		if !ok {
			return false
		}
		cond, ok = e.compare(l, op, suffix, r)
		if !ok {
			return false
		}
	}
	if p == len(s) {
		if cond {
			out.WriteString("true")
		}
		return true
	}
	return e.conditional(out, s, p, cond, rhs)
}

func (e *Expander) suffixOK(suffix string) bool {
	if e.Suffixes == nil {
		return suffix == "level"
	}
	for _, x := range e.Suffixes {
		if x == suffix {
			return true
		}
	}
	return false
}

// compare evaluates a relational operator. Without a suffix, operands that
// are both integers compare numerically, others as strings; "length"
// compares lengths and "level" compares compatibility levels.
func (e *Expander) compare(l, op, suffix, r string) (bool, bool) {
	var cmp int
	switch suffix {
	case "length":
		cmp = compareInt(int64(len(l)), int64(len(r)))
	case "level":
		a, ok := parseLevel(l)
		if !ok {
			e.warnf("malformed compatibility level syntax: \"%s\"", l)
			return false, false
		}
		b, ok := parseLevel(r)
		if !ok {
			e.warnf("malformed compatibility level syntax: \"%s\"", r)
			return false, false
		}
		cmp = compareInt(a, b)
	default:
		a, err1 := strconv.ParseInt(l, 10, 64)
		b, err2 := strconv.ParseInt(r, 10, 64)
		if err1 == nil && err2 == nil {
			cmp = compareInt(a, b)
		} else {
			cmp = strings.Compare(l, r)
		}
	}
	switch op {
	case "==":
		return cmp == 0, true
	case "!=":
		return cmp != 0, true
	case "<":
		return cmp < 0, true
	case "<=":
		return cmp <= 0, true
	case ">=":
		return cmp >= 0, true
	default:
		return cmp > 0, true
	}
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseLevel reads a compatibility_level "major[.minor[.patch]]"
// (postconf(5) compatibility_level) into one comparable number.
func parseLevel(s string) (int64, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return 0, false
	}
	var v int64
	for i := 0; i < 3; i++ {
		var n int64
		if i < len(parts) {
			if parts[i] == "" || len(parts[i]) > 6 {
				return 0, false
			}
			for _, c := range []byte(parts[i]) {
				if c < '0' || c > '9' {
					return 0, false
				}
			}
			n, _ = strconv.ParseInt(parts[i], 10, 64)
		}
		v = v*1000000 + n
	}
	return v, true
}
