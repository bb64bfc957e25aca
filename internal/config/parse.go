package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Entry is one "name = value" definition from main.cf.
type Entry struct {
	Name, Value string
	Line        int // first physical line of the logical line
}

// ParseFile reads main.cf syntax (postconf(5), "DESCRIPTION"): "#" comment
// lines and blank lines are ignored anywhere, a line starting with
// whitespace continues the previous logical line, and each logical line is
// "name = value" with whitespace around name and value trimmed. It returns
// entries in file order (a later definition of a name wins when looked up)
// and warnings for text it skips.
func ParseFile(path string) ([]Entry, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, unwrapPathErr(err))
	}
	return Parse(path, data)
}

// unwrapPathErr drops the path (the caller names it) and capitalizes the
// system error as C's strerror does, so "open /x/main.cf: No such file or
// directory" reads as Postfix prints it.
func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		msg := pe.Err.Error()
		if msg != "" && msg[0] >= 'a' && msg[0] <= 'z' {
			msg = string(msg[0]-'a'+'A') + msg[1:]
		}
		return errors.New(msg)
	}
	return err
}

// Parse is ParseFile on data already read; path names the file in messages.
func Parse(path string, data []byte) ([]Entry, []string, error) {
	var entries []Entry
	var warnings []string
	var cur strings.Builder
	curLine := 0
	flush := func() error {
		if curLine == 0 {
			return nil
		}
		e, err := parseLogical(path, curLine, cur.String())
		cur.Reset()
		curLine = 0
		if err != nil {
			return err
		}
		entries = append(entries, e)
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " \t\r\n\v\f")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if isSpace(line[0]) {
			if curLine == 0 {
				warnings = append(warnings, fmt.Sprintf("%s: logical line must not start with whitespace: \"%s\"", path, line))
				continue
			}
			cur.WriteString(line)
			continue
		}
		if err := flush(); err != nil {
			return nil, warnings, err
		}
		curLine = n
		cur.WriteString(line)
	}
	if err := sc.Err(); err != nil {
		return nil, warnings, fmt.Errorf("read %s: %w", path, err)
	}
	if err := flush(); err != nil {
		return nil, warnings, err
	}
	return entries, warnings, nil
}

// parseLogical splits "name = value" as Postfix's split_nameval(3) does.
func parseLogical(path string, line int, s string) (Entry, error) {
	i := 0
	for i < len(s) && !isSpace(s[i]) && s[i] != '=' {
		i++
	}
	name := s[:i]
	if name == "" {
		return Entry{}, fmt.Errorf("%s, line %d: missing attribute name: \"%s\"", path, line, s)
	}
	j := skipSpace(s, i)
	if j >= len(s) || s[j] != '=' {
		return Entry{}, fmt.Errorf("%s, line %d: missing '=' after attribute name: \"%s\"", path, line, s)
	}
	value := strings.TrimRight(strings.TrimLeft(s[j+1:], " \t\r\n\v\f"), " \t\r\n\v\f")
	return Entry{Name: name, Value: value, Line: line}, nil
}
