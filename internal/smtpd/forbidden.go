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
		if !strings.Contains(w, ":") {
			f.words[strings.ToUpper(w)] = true
			continue
		}
		t, err := maps.Open(w, mo)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("smtpd_forbidden_commands: %w", err)
		}
		f.tables = append(f.tables, t)
	}
	return f, nil
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
