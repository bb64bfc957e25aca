// Package confedit edits main.cf as `postconf -e`, `-X` and `-#` do
// (postconf(1)): a parameter's logical line, continuation lines included,
// is replaced, removed or commented out where it stands; new parameters are
// appended; every other line (comments, blank lines, order) is kept byte for
// byte. Files are replaced atomically, so a crash or a full disk never leaves
// a half-written main.cf behind.
package confedit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// isSpace is Postfix's whitespace for main.cf (ISSPACE: the C locale's
// isspace).
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func trimSpace(s string) string {
	i, j := 0, len(s)
	for i < j && isSpace(s[i]) {
		i++
	}
	for j > i && isSpace(s[j-1]) {
		j--
	}
	return s[i:j]
}

// Assignment is one validated `name=value` of postconf -e (postconf(1),
// -e), parsed once so that the edit and its error report agree.
type Assignment struct {
	Name, Value string
}

// Error texts follow Postfix's postconf where it has one, so that scripts
// and admins see the messages they know; callers add the program prefix.

// ParseAssignment validates a `postconf -e` argument as Postfix does: a name
// (text up to whitespace or "="), optional whitespace, "=", and a value whose
// surrounding whitespace is dropped. "a = b" is therefore the same as "a=b".
// Multi-line values are refused: main.cf would read the second line as a
// continuation or a parameter of its own.
func ParseAssignment(arg string) (Assignment, error) {
	if strings.ContainsRune(arg, '\n') {
		return Assignment{}, errors.New("-e, -X, or -# accepts no multi-line input")
	}
	s := arg
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	start := i
	for i < len(s) && !isSpace(s[i]) && s[i] != '=' {
		i++
	}
	name := s[start:i]
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if name == "" {
		return Assignment{}, fmt.Errorf("missing attribute name: %q", trimSpace(arg))
	}
	if i >= len(s) || s[i] != '=' {
		return Assignment{}, fmt.Errorf("missing '=' after attribute name: %q", trimSpace(arg))
	}
	return Assignment{Name: name, Value: trimSpace(s[i+1:])}, nil
}

// checkNames validates -X/-# arguments: each must be a bare parameter name.
func checkNames(opt string, names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	seen := make(map[string]bool)
	for _, n := range names {
		if strings.ContainsRune(n, '\n') {
			return nil, errors.New("-e, -X, or -# accepts no multi-line input")
		}
		n = trimSpace(n)
		if n == "" {
			return nil, errors.New("-X or -# requires non-blank parameter names")
		}
		if strings.ContainsRune(n, '=') {
			return nil, fmt.Errorf("%s %q: a parameter name cannot contain '='; use -e name=value to set a value", opt, n)
		}
		// Postfix crashes on a repeated name; once is enough.
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// mode says what happens to a matched parameter.
type mode int

const (
	modeSet mode = iota
	modeRemove
	modeComment
)

// lineName returns the parameter name a main.cf logical line starts with:
// the text up to the first whitespace or "=".
func lineName(line string) string {
	i := 0
	for i < len(line) && !isSpace(line[i]) && line[i] != '=' {
		i++
	}
	return line[:i]
}

// apply edits main.cf text. For modeSet, values holds each name's new value
// and order the names in command-line order, for appending those not found.
func apply(data []byte, m mode, order []string, values map[string]string) []byte {
	var out bytes.Buffer
	found := make(map[string]bool)
	inMatch := false // inside a matched parameter's continuation lines
	for len(data) > 0 {
		var line []byte
		if k := bytes.IndexByte(data, '\n'); k >= 0 {
			line, data = data[:k+1], data[k+1:]
		} else {
			line, data = data, nil
		}
		content := strings.TrimRight(string(line), "\n")
		rest := strings.TrimLeft(content, " \t\r\v\f")
		switch {
		case rest == "" || rest[0] == '#':
			// Comments and blank lines are not part of any parameter,
			// even between continuation lines: Postfix keeps them.
			out.Write(line)
		case rest != content: // continuation line
			if !inMatch {
				out.Write(line)
			} else if m == modeComment {
				out.WriteByte('#')
				out.Write(line)
			}
		default:
			name := lineName(content)
			_, hit := values[name]
			inMatch = hit
			if !hit {
				out.Write(line)
				break
			}
			found[name] = true
			switch m {
			case modeSet:
				fmt.Fprintf(&out, "%s = %s\n", name, values[name])
			case modeComment:
				out.WriteByte('#')
				out.Write(line)
			}
		}
	}
	if m == modeSet {
		for _, name := range order {
			if found[name] {
				continue
			}
			// Postfix appends right after a last line that lacks its
			// newline, gluing two parameters together; end it first.
			if out.Len() > 0 && out.Bytes()[out.Len()-1] != '\n' {
				out.WriteByte('\n')
			}
			fmt.Fprintf(&out, "%s = %s\n", name, values[name])
		}
	}
	return out.Bytes()
}

// EditSet returns main.cf text with `postconf -e` assignments applied: an
// existing parameter (every definition of it) is replaced in place, a new
// one appended in argument order. When a name is given twice the last value
// wins, as in Postfix.
func EditSet(data []byte, assignments []string) ([]byte, error) {
	if len(assignments) == 0 {
		return nil, errors.New("-e requires name=value argument")
	}
	values := make(map[string]string)
	var order []string
	for _, a := range assignments {
		as, err := ParseAssignment(a)
		if err != nil {
			return nil, err
		}
		if _, dup := values[as.Name]; !dup {
			order = append(order, as.Name)
		}
		values[as.Name] = as.Value
	}
	return apply(data, modeSet, order, values), nil
}

// EditRemove returns main.cf text without the named parameters (`postconf
// -X`); absent names are not an error.
func EditRemove(data []byte, names []string) ([]byte, error) {
	return editNames(data, "-X", modeRemove, names)
}

// EditComment returns main.cf text with the named parameters commented out
// (`postconf -#`) by prefixing "#" to each of their lines.
func EditComment(data []byte, names []string) ([]byte, error) {
	return editNames(data, "-#", modeComment, names)
}

func editNames(data []byte, opt string, m mode, names []string) ([]byte, error) {
	ns, err := checkNames(opt, names)
	if err != nil {
		return nil, err
	}
	values := make(map[string]string, len(ns))
	for _, n := range ns {
		values[n] = ""
	}
	return apply(data, m, nil, values), nil
}

// Set implements `postconf -e name=value...` (postconf(1), -e) on the
// main.cf at path, replacing it atomically.
func Set(path string, assignments []string) error {
	return editFile(path, func(b []byte) ([]byte, error) { return EditSet(b, assignments) }, nil)
}

// Remove implements `postconf -X name...` (postconf(1), -X): the named
// parameters' logical lines are removed; the file is replaced atomically.
func Remove(path string, names []string) error {
	return editFile(path, func(b []byte) ([]byte, error) { return EditRemove(b, names) }, nil)
}

// Comment implements `postconf -# name...` (postconf(1), -#): the named
// parameters' lines get a "#" prefix, keeping the old setting visible for
// the admin; the file is replaced atomically.
func Comment(path string, names []string) error {
	return editFile(path, func(b []byte) ([]byte, error) { return EditComment(b, names) }, nil)
}
