package maps

import (
	"errors"
	"fmt"
	"strings"
)

// Record is one key/value pair of a table, with the source line it came from.
type Record struct {
	Key, Value string
	Line       int
}

// LineError describes one malformed logical line of a table source file.
// Postfix's postmap(1) warns about such a line and skips it; ParseSource
// reports it this way so that the caller chooses between that behaviour
// (log and go on) and refusing the file.
type LineError struct {
	Path string
	Line int
	Msg  string
	// Orphan holds the text of a continuation with nothing to continue
	// (Msg says "logical line must not start with whitespace"), so a
	// caller can word that warning its own way, as postmap does.
	Orphan string
}

// Error formats the problem as Postfix's warning does: "FILE, line N: ...".
func (e *LineError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
	return fmt.Sprintf("%s, line %d: %s", e.Path, e.Line, e.Msg)
}

// LineErrors splits an error returned by ParseSource into its per-line
// parts, so a caller can log each as Postfix logs a warning.
func LineErrors(err error) []*LineError {
	if err == nil {
		return nil
	}
	var out []*LineError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, LineErrors(e)...)
		}
		return out
	}
	var le *LineError
	if errors.As(err, &le) {
		out = append(out, le)
	}
	return out
}

// ParseSource reads the postmap(1) input format (key, whitespace, value;
// "#" comments; continuation lines start with whitespace) from data, naming
// path in errors. Keys are lowercased when fold is set. Records come back in
// file order, duplicates included.
//
// The rules, checked against Debian's postmap 3.7 (postmap(1) "INPUT FILE
// FORMAT"):
//   - empty lines, whitespace-only lines and lines whose first non-blank
//     character is "#" are ignored, even in the middle of a continued entry;
//   - a line that starts with whitespace continues the previous logical
//     line; it is appended as is (leading blanks kept), so "a b" followed by
//     "  c" gives the value "b  c";
//   - the key ends at the first blank outside double quotes; quotes and
//     backslashes stay part of the key (the lookup key of a quoted
//     localpart keeps its quotes, as RFC 5322 wants), a backslash escapes
//     the next character, and an unbalanced quote makes the line invalid;
//   - the value is the rest with surrounding whitespace removed; a line
//     without a value is invalid;
//   - the line number of an entry is that of its first physical line.
//
// An invalid line does not stop the parse: ParseSource returns every good
// record together with a non-nil error that joins one *LineError per bad
// line (see LineErrors). Postfix warns about such lines and skips them.
func ParseSource(path string, data []byte, fold bool) ([]Record, error) {
	lines, orphans := SourceLines(data)
	var (
		recs []Record
		errs []error
	)
	for _, o := range orphans {
		errs = append(errs, &LineError{Path: path, Line: o.Num, Orphan: o.Text,
			Msg: fmt.Sprintf("logical line must not start with whitespace: %q", o.Text)})
	}
	for _, l := range lines {
		rec, msg := parseEntry(l.Text, fold)
		if msg != "" {
			errs = append(errs, &LineError{Path: path, Line: l.Num, Msg: msg})
			continue
		}
		rec.Line = l.Num
		recs = append(recs, rec)
	}
	return recs, errors.Join(errs...)
}

// parseEntry splits one logical line into key and value; msg is Postfix's
// warning text when the line is malformed.
func parseEntry(line string, fold bool) (Record, string) {
	i, ok := scanKey(line)
	if !ok {
		return Record{}, fmt.Sprintf("unbalanced '\"' in '%s' -- ignoring this line", line)
	}
	key := line[:i]
	value := strings.Trim(line[i:], " \t\r\n\v\f")
	if key == "" || value == "" {
		return Record{}, "expected format: key whitespace value -- ignoring this line"
	}
	if fold {
		key = foldASCII(key)
	}
	return Record{Key: key, Value: value}, ""
}

// scanKey returns the end of the key: the first blank outside double quotes.
// A backslash escapes the next character, inside quotes or not, as
// Postfix's quote-aware tokenizer does.
func scanKey(s string) (int, bool) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && isBlank(c):
			return i, true
		}
	}
	return len(s), !quoted
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

// foldASCII lowercases ASCII letters only, like Postfix's lowercase(): with
// smtputf8 off (the default at compatibility_level 0) Postfix leaves
// non-ASCII bytes alone, so "KÄY" is stored as "kÄy".
func foldASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
