package smtpd

import (
	"fmt"
	"strings"

	"moat/internal/maps"
)

// forbiddenList is smtpd_forbidden_commands (postconf(5)): plain command
// names and lookup tables, inline ones included (the default ends in
// regexp:{{/^[^A-Z]/ Bogus}}, which catches TLS handshakes, HTTP bodies and
// other non-SMTP input on port 25).
type forbiddenList struct {
	words  map[string]bool
	tables []maps.Table
}

func newForbiddenList(words []string, mo maps.Options) (*forbiddenList, error) {
	f := &forbiddenList{words: map[string]bool{}}
	for _, w := range words {
		typ, name, isTable := strings.Cut(w, ":")
		if !isTable {
			f.words[strings.ToUpper(w)] = true
			continue
		}
		var t maps.Table
		var err error
		switch {
		case (typ == "regexp" || typ == "pcre") && strings.HasPrefix(name, "{"):
			t, err = inlinePatternTable(typ, name)
		default:
			t, err = maps.Open(w, mo)
		}
		if err != nil {
			f.close()
			return nil, fmt.Errorf("smtpd_forbidden_commands: %w", err)
		}
		f.tables = append(f.tables, t)
	}
	return f, nil
}

// inlinePatternTable reads Postfix's inline pattern table, "{{/re/ result},
// {/re2/ result2}}" (regexp_table(5), Postfix 3.7), one rule per brace group.
func inlinePatternTable(typ, body string) (maps.Table, error) {
	body = strings.TrimSpace(body)
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return nil, fmt.Errorf("%s:%s: missing braces", typ, body)
	}
	inner := body[1 : len(body)-1]
	var rules []string
	depth, start := 0, -1
	for i := 0; i < len(inner); i++ {
		switch inner[i] {
		case '{':
			if depth == 0 {
				start = i + 1
			}
			depth++
		case '}':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("%s:%s: unbalanced braces", typ, body)
			}
			if depth == 0 {
				rules = append(rules, strings.TrimSpace(inner[start:i]))
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("%s:%s: unbalanced braces", typ, body)
	}
	data := []byte(strings.Join(rules, "\n") + "\n")
	if typ == "pcre" {
		return maps.ParsePCRETable(typ+":"+body, data)
	}
	return maps.ParseRegexpTable(typ+":"+body, data)
}

// match reports whether a command verb is forbidden; a table failure is
// returned so the caller can log it, and counts as no match.
func (f *forbiddenList) match(verb string) (bool, error) {
	if f == nil {
		return false, nil
	}
	if f.words[verb] {
		return true, nil
	}
	for _, t := range f.tables {
		_, found, err := t.Lookup(verb)
		if err != nil {
			return false, err
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

func (f *forbiddenList) close() error {
	if f == nil {
		return nil
	}
	var first error
	for _, t := range f.tables {
		if err := t.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
