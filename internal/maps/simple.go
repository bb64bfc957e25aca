package maps

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// memTable is a fixed-key table held in memory: texthash: and inline:
// share it.
type memTable struct {
	m    map[string]string
	opts Options
}

// Records lists the entries sorted by key, for `postmap -s` (Postfix lists
// them in hash order; sorting makes the output reproducible).
func (t *memTable) Records() ([]Record, error) {
	keys := slices.Sorted(maps.Keys(t.m))
	recs := make([]Record, len(keys))
	for i, k := range keys {
		recs[i] = Record{Key: k, Value: t.m[k]}
	}
	return recs, nil
}

// Lookup implements Table.
func (t *memTable) Lookup(key string) (string, bool, error) {
	v, ok := t.m[t.opts.fold(key)]
	return v, ok, nil
}

// Pattern implements Table.
func (t *memTable) Pattern() bool { return false }

// Close implements Table.
func (t *memTable) Close() error { return nil }

// openTexthash reads a postmap(1) source file into memory (DATABASE_README
// "texthash"): no index to rebuild, at the cost of parsing at open time.
// Bad lines and duplicates are warned about and skipped, as Postfix does;
// the first of duplicate keys wins.
func openTexthash(name string, opts Options) (Table, error) {
	if name == "" {
		return nil, fmt.Errorf("need dictionary type:name, got %q", "texthash:")
	}
	f, err := openTableFile(name, opts)
	if err != nil {
		return nil, fmt.Errorf("open texthash:%s: %w", name, err)
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("read texthash:%s: %w", name, err)
	}
	// Folded below with the table's options (ASCII or UTF-8), the same
	// function its lookups use.
	recs, perr := ParseSource(name, data, false)
	for _, le := range LineErrors(perr) {
		opts.warnf("%s", le.Error())
	}
	t := &memTable{m: make(map[string]string, len(recs)), opts: opts}
	for _, r := range recs {
		r.Key = opts.fold(r.Key)
		if _, dup := t.m[r.Key]; dup {
			opts.warnf("%s, line %d: duplicate entry: \"%s\"", name, r.Line, r.Key)
			continue
		}
		t.m[r.Key] = r.Value
	}
	return t, nil
}

// inlineUsage ends every inline: syntax error, as in Postfix.
func inlineError(name, msg string) error {
	return fmt.Errorf("%s: \"inline:%s\"; need \"inline:{name=value...}\"", msg, name)
}

// matchBrace returns the index of the '}' that closes the '{' at s[0], or
// -1 when it is never closed.
func matchBrace(s string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func isInlineSep(c byte) bool { return c == ',' || isBlank(c) }

// parseInline parses the name of an inline: table, "{ key=value, { key =
// value with spaces }, ... }" (DATABASE_README, Postfix 3.0 and later).
// Elements are separated by commas or whitespace; an element in braces may
// hold whitespace around "=" and in the value. Errors use Postfix's words,
// which util/dict_inline.ref pins down.
func parseInline(name string, opts Options) (map[string]string, error) {
	if name == "" || name[0] != '{' || matchBrace(name) != len(name)-1 {
		return nil, inlineError(name, "bad syntax")
	}
	inner := name[1 : len(name)-1]
	m := map[string]string{}
	count := 0
	for i := 0; i < len(inner); {
		if isInlineSep(inner[i]) {
			i++
			continue
		}
		start, depth := i, 0
		for ; i < len(inner) && (depth > 0 || !isInlineSep(inner[i])); i++ {
			switch inner[i] {
			case '{':
				depth++
			case '}':
				depth--
			}
		}
		tok := inner[start:i]
		if tok[0] == '{' {
			if matchBrace(tok) != len(tok)-1 {
				return nil, inlineError(name, fmt.Sprintf("syntax error after '}' in \"%s\"", tok))
			}
			tok = strings.TrimSpace(tok[1 : len(tok)-1])
			if tok == "" {
				return nil, inlineError(name, "no key found; expected format: key = value")
			}
		}
		k, v, msg := splitNameValue(tok)
		if msg != "" {
			return nil, inlineError(name, msg)
		}
		m[opts.fold(k)] = v
		count++
	}
	if count == 0 {
		return nil, inlineError(name, "empty table")
	}
	return m, nil
}

// splitNameValue splits "name = value" at the first "=" outside double
// quotes; the quotes stay in the name, as Postfix keeps them.
func splitNameValue(s string) (name, value, msg string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '=' && !quoted:
			return strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:]), ""
		}
	}
	if quoted {
		return "", "", "unbalanced '\"'"
	}
	return "", "", "missing '=' after attribute name"
}

// openInline opens inline:{...}. An element with an empty value is an
// error here; Postfix accepts it and then warns at every lookup that an
// empty result is not allowed.
func openInline(name string, opts Options) (Table, error) {
	m, err := parseInline(name, opts)
	if err != nil {
		return nil, err
	}
	for k, v := range m {
		if v == "" {
			return nil, inlineError(name, fmt.Sprintf("empty value for \"%s\"", k))
		}
	}
	return &memTable{m: m, opts: opts}, nil
}

// openStatic opens static:value, which answers value for every key
// (DATABASE_README); static:{ value with spaces } allows blanks.
func openStatic(name string, opts Options) (Table, error) {
	value := name
	if strings.HasPrefix(name, "{") {
		end := matchBrace(name)
		switch {
		case end < 0:
			return nil, fmt.Errorf("bad static:name syntax: missing '}' in \"%s\"", name)
		case end != len(name)-1:
			return nil, fmt.Errorf("bad static:name syntax: syntax error after '}' in \"%s\"", name)
		}
		value = strings.TrimSpace(name[1:end])
	}
	if value == "" {
		return nil, fmt.Errorf("static:%s: empty value", name)
	}
	return staticTable(value), nil
}

// staticTable answers its value for every key. Like Postfix's, it cannot
// be listed (no Records method).
type staticTable string

// Lookup implements Table.
func (t staticTable) Lookup(string) (string, bool, error) { return string(t), true, nil }

// Pattern implements Table.
func (staticTable) Pattern() bool { return false }

// Close implements Table.
func (staticTable) Close() error { return nil }

// failTable is fail:name: every lookup is a temporary error (Postfix 3.0,
// DATABASE_README), to test or to force deferral.
type failTable struct{ name string }

func openFail(name string, opts Options) (Table, error) {
	if name == "" {
		return nil, fmt.Errorf("need dictionary type:name, got %q", "fail:")
	}
	return failTable{name}, nil
}

// Lookup implements Table.
func (t failTable) Lookup(string) (string, bool, error) {
	return "", false, fmt.Errorf("table fail:%s: lookup failed by design", t.name)
}

// Pattern implements Table.
func (failTable) Pattern() bool { return false }

// Close implements Table.
func (failTable) Close() error { return nil }

// environTable is environ:name: the process environment (Postfix 3.7
// "environ" type). Variable names are case-sensitive, so keys are never
// folded.
type environTable struct{}

func openEnviron(name string, opts Options) (Table, error) {
	if name == "" {
		return nil, fmt.Errorf("need dictionary type:name, got %q", "environ:")
	}
	return environTable{}, nil
}

// Lookup implements Table.
func (environTable) Lookup(key string) (string, bool, error) {
	v, ok := os.LookupEnv(key)
	return v, ok, nil
}

// Pattern implements Table.
func (environTable) Pattern() bool { return false }

// Close implements Table.
func (environTable) Close() error { return nil }
