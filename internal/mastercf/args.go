package mastercf

import (
	"errors"
	"fmt"
	"strings"
)

// token is one whitespace-separated word of a logical line. A `{` opens a
// group in which whitespace does not separate words (master(5), Postfix 3.0
// and later: `{ ... }` around command arguments that contain whitespace).
type token struct {
	text string
	line int // index of the physical line within the logical line
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// tokenize splits a logical line into words, keeping `{ ... }` groups whole.
func tokenize(s string) ([]token, error) {
	var toks []token
	line := 0
	i := 0
	for i < len(s) {
		if isSpace(s[i]) {
			if s[i] == '\n' {
				line++
			}
			i++
			continue
		}
		start, startLine := i, line
		depth := 0
		for i < len(s) && (depth > 0 || !isSpace(s[i])) {
			switch s[i] {
			case '{':
				depth++
			case '}':
				if depth > 0 {
					depth--
				}
			case '\n':
				line++
			}
			i++
		}
		if depth > 0 {
			return nil, fmt.Errorf("missing '}' in %q: close every '{' group", s[start:])
		}
		toks = append(toks, token{text: s[start:i], line: startLine})
	}
	return toks, nil
}

// unbrace removes a group's outer braces and the whitespace just inside
// them: `{ a b }` is the single argument "a b".
func unbrace(t string) (string, error) {
	depth := 0
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				if i != len(t)-1 {
					return "", fmt.Errorf("text %q after '}' in %q: a group must be a whole argument", t[i+1:], t)
				}
				return strings.Trim(t[1:i], " \t\r\n\v\f"), nil
			}
		}
	}
	return "", fmt.Errorf("missing '}' in %q", t)
}

func hasSpace(s string) bool {
	return strings.ContainsAny(s, " \t\r\n\v\f")
}

// splitOption separates option clusters the way Postfix normalises them:
// "-vo" is "-v" then "-o", and "-oname=value" is "-o" then "name=value".
func splitOption(arg string) []string {
	var out []string
	if len(arg) > 2 {
		if k := strings.IndexByte(arg[2:], 'o'); k >= 0 {
			out = append(out, arg[:k+2])
			arg = "-" + arg[k+2:]
		}
	}
	if len(arg) > 2 && arg[1] == 'o' {
		return append(out, "-o", arg[2:])
	}
	return append(out, arg)
}

type piece struct {
	text   string
	braced bool
	line   int
}

// parseArgs reads the command's arguments: first the daemon options
// (`-o name=value`, `-v`, ...), which end at the first argument that does
// not start with "-" or at "--", then the command's own arguments.
func (s *Service) parseArgs(toks []token, lines []int) (int, error) {
	var ps []piece
	for _, t := range toks {
		if t.text[0] == '#' {
			return lines[t.line], fmt.Errorf("%q: '#' starts a comment only at the beginning of a line; "+
				"put comments on lines of their own", t.text)
		}
		p := piece{text: t.text, line: lines[t.line]}
		if t.text[0] == '{' {
			v, err := unbrace(t.text)
			if err != nil {
				return p.line, err
			}
			p.text, p.braced = v, true
		}
		ps = append(ps, p)
	}
	ps = expandOptions(ps)
	s.optEnd = -1
	for i := 0; i < len(ps); i++ {
		p := ps[i]
		if s.optEnd >= 0 {
			s.Args = append(s.Args, p.text)
			if hasSpace(p.text) {
				s.display = append(s.display, "{"+p.text+"}")
			} else {
				s.display = append(s.display, p.text)
			}
			continue
		}
		if p.text == "" || p.text[0] != '-' || p.text == "--" {
			s.optEnd = len(s.Args)
			if err := checkStray(ps, i); err != nil {
				return p.line, err
			}
			s.Args = append(s.Args, p.text)
			s.display = append(s.display, p.text)
			continue
		}
		if p.braced {
			return p.line, fmt.Errorf("{ %s }: write daemon options such as %q without braces", p.text, p.text)
		}
		if !validOption(p.text) {
			return p.line, fmt.Errorf("%q: not a daemon option; options are letters after \"-\" "+
				"(-v, -D, -o name=value), and \"--\" ends them", p.text)
		}
		if p.text != "-o" {
			s.Args = append(s.Args, p.text)
			s.display = append(s.display, p.text)
			continue
		}
		if i+1 >= len(ps) {
			return p.line, errors.New(`"-o" at the end of the entry: write -o name=value`)
		}
		i++
		o, disp, err := parseOverride(ps, i)
		if err != nil {
			return ps[i].line, err
		}
		s.Overrides = append(s.Overrides, o)
		s.Args = append(s.Args, "-o", o.Name+"="+o.Value)
		s.display = append(s.display, "-o", disp)
		if err := checkSpacedValue(ps, i); err != nil {
			return ps[i].line, err
		}
	}
	if s.optEnd < 0 {
		s.optEnd = len(s.Args)
	}
	return 0, nil
}

// parseOverride reads the value of "-o" at ps[i]: `name=value` or
// `{ name = value }`. It returns the display form postconf -M prints.
func parseOverride(ps []piece, i int) (Override, string, error) {
	p := ps[i]
	eq := strings.IndexByte(p.text, '=')
	if p.braced {
		if eq <= 0 || strings.TrimSpace(p.text[:eq]) == "" {
			return Override{}, "", fmt.Errorf("-o { %s }: expected -o { name = value }", p.text)
		}
		o := Override{
			Name:  strings.TrimSpace(p.text[:eq]),
			Value: strings.TrimSpace(p.text[eq+1:]),
			Line:  p.line,
		}
		if hasSpace(o.Name) {
			return Override{}, "", fmt.Errorf("-o { %s }: parameter name %q contains whitespace", p.text, o.Name)
		}
		disp := o.Name + "=" + o.Value
		if hasSpace(disp) {
			disp = "{" + disp + "}"
		}
		return o, disp, nil
	}
	if eq < 0 && i+1 < len(ps) && strings.HasPrefix(ps[i+1].text, "=") && !ps[i+1].braced {
		return Override{}, "", spacedError(p.text, ps, i+1)
	}
	if eq <= 0 {
		return Override{}, "", fmt.Errorf("-o %s: expected -o name=value (or -o { name = value })", p.text)
	}
	return Override{Name: p.text[:eq], Value: p.text[eq+1:], Line: p.line}, p.text, nil
}

// spacedError explains seed 002's `-o name = value, value`: master.cf splits
// arguments at whitespace, so Postfix would read "-o name" and then pass
// "=", "value," ... to the daemon as plain arguments, ending the options
// there and silently ignoring every later -o.
func spacedError(name string, ps []piece, j int) error {
	var words []string
	first := strings.TrimPrefix(ps[j].text, "=")
	if first != "" {
		words = append(words, first)
	}
	for k := j + 1; k < len(ps) && ps[k].line == ps[j].line && !strings.HasPrefix(ps[k].text, "-"); k++ {
		words = append(words, ps[k].text)
	}
	return spacedMessage(name, words)
}

func spacedMessage(name string, words []string) error {
	var compact []string
	for _, w := range words {
		if w = strings.Trim(w, ","); w != "" {
			compact = append(compact, w)
		}
	}
	written := strings.TrimSpace("-o " + name + " = " + strings.Join(words, " "))
	return fmt.Errorf("%q: whitespace separates master.cf arguments, so this does not set %s; "+
		"write -o %s=%s or -o { %s = %s }", written, name,
		name, strings.Join(compact, ","), name, strings.Join(words, " "))
}

// checkSpacedValue catches `-o name= value` and `-o name=a, b`: a value
// continued after whitespace on the same line, which master.cf would
// instead take as a plain argument ending the options.
func checkSpacedValue(ps []piece, i int) error {
	p := ps[i]
	if p.braced || i+1 >= len(ps) {
		return nil
	}
	next := ps[i+1]
	if next.line != p.line || strings.HasPrefix(next.text, "-") || next.braced {
		return nil
	}
	if !strings.HasSuffix(p.text, "=") && !strings.HasSuffix(p.text, ",") {
		return nil
	}
	eq := strings.IndexByte(p.text, '=')
	name, val := p.text[:eq], p.text[eq+1:]
	words := []string{}
	if val != "" {
		words = append(words, val)
	}
	for k := i + 1; k < len(ps) && ps[k].line == p.line && !strings.HasPrefix(ps[k].text, "-"); k++ {
		words = append(words, ps[k].text)
	}
	return spacedMessage(name, words)
}

// checkStray rejects a plain argument that starts with "=": it can only be
// the remains of a spaced `name = value` that lost its "-o".
func checkStray(ps []piece, i int) error {
	if !ps[i].braced && strings.HasPrefix(ps[i].text, "=") {
		return fmt.Errorf("argument %q: whitespace separates master.cf arguments; "+
			"write -o name=value or -o { name = value }", ps[i].text)
	}
	return nil
}

// validOption accepts "-" followed by option letters (-v, -D, -vv), where
// anything may follow an "o", which takes a value ("-oname=value").
func validOption(arg string) bool {
	if len(arg) < 2 {
		return false
	}
	for i := 1; i < len(arg); i++ {
		c := arg[i]
		if c == 'o' {
			return true
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// expandOptions splits option clusters in the daemon options ("-vo x=1"
// is "-v -o x=1", "-ox=1" is "-o x=1"), tracking, as parseArgs does, where
// the options end and which words are -o values, which are never split.
func expandOptions(ps []piece) []piece {
	out := make([]piece, 0, len(ps))
	inOpts, wantValue := true, false
	var pending []piece
	for _, p := range ps {
		pending = append(pending[:0], p)
		for len(pending) > 0 {
			q := pending[0]
			pending = pending[1:]
			switch {
			case wantValue || !inOpts:
				wantValue = false
			case q.text == "" || q.text[0] != '-' || q.text == "--":
				inOpts = false
			case q.braced || !validOption(q.text):
				// parseArgs reports it.
			default:
				if parts := splitOption(q.text); len(parts) > 1 {
					split := make([]piece, 0, len(parts)+len(pending))
					for _, x := range parts {
						split = append(split, piece{text: x, line: q.line})
					}
					pending = append(split, pending...)
					continue
				}
				wantValue = q.text == "-o"
			}
			out = append(out, q)
		}
	}
	return out
}
