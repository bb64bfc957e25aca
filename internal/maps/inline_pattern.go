package maps

import (
	"fmt"
	"io"
	"strings"
)

// inlinePatternSource turns the inline form of a pattern table,
// "{{/re/ result}, {/re2/ result2}}" (regexp_table(5), pcre_table(5),
// cidr_table(5): Postfix 3.7 and later), into the table's source text, one
// rule per brace group, so the file parsers read it. smtpd's default
// smtpd_forbidden_commands ends in such a table.
func inlinePatternSource(kind, name string) ([]byte, error) {
	body := strings.TrimSpace(name)
	if len(body) < 2 || body[0] != '{' || matchBrace(body) != len(body)-1 {
		return nil, fmt.Errorf("open %s:%s: bad syntax: need %s:{{rule}, {rule}...}", kind, name, kind)
	}
	inner := body[1 : len(body)-1]
	var rules []string
	for i := 0; i < len(inner); {
		switch c := inner[i]; {
		case c == ',' || isBlank(c):
			i++
		case c == '{':
			end := matchBrace(inner[i:])
			if end < 0 {
				return nil, fmt.Errorf("open %s:%s: unbalanced braces", kind, name)
			}
			rules = append(rules, strings.TrimSpace(inner[i+1:i+end]))
			i += end + 1
		default:
			return nil, fmt.Errorf("open %s:%s: rule outside braces at %q", kind, name, inner[i:])
		}
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("open %s:%s: empty table", kind, name)
	}
	return []byte(strings.Join(rules, "\n") + "\n"), nil
}

// patternSource returns a pattern table's source text: the inline form's
// rules, or the file's bytes (opened with the ownership checks of
// openTableFile).
func patternSource(kind, name string, opts Options) ([]byte, error) {
	if strings.HasPrefix(strings.TrimSpace(name), "{") {
		return inlinePatternSource(kind, name)
	}
	f, err := openTableFile(name, opts)
	if err != nil {
		return nil, fmt.Errorf("open %s:%s: %w", kind, name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s:%s: %w", kind, name, err)
	}
	return data, nil
}
