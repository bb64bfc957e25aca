package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseBool reads a boolean parameter. Postfix accepts "yes" and "no" in any
// case (postconf(5), "boolean"); anything else is a configuration error.
func ParseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, fmt.Errorf("expected yes or no")
}

// ParseDuration reads a time value: an integer with an optional one-letter
// unit s, m, h, d or w (postconf(5): "Time units"); unit applies when the
// value has no suffix.
func ParseDuration(v string, unit byte) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, fmt.Errorf("expected a time value (number with optional s, m, h, d or w unit)")
	}
	if c := v[len(v)-1]; c < '0' || c > '9' {
		unit = c
		v = v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("expected a time value (number with optional s, m, h, d or w unit)")
	}
	var d time.Duration
	switch unit {
	case 's', 0:
		d = time.Second
	case 'm':
		d = time.Minute
	case 'h':
		d = time.Hour
	case 'd':
		d = 24 * time.Hour
	case 'w':
		d = 7 * 24 * time.Hour
	default:
		return 0, fmt.Errorf("expected a time unit s, m, h, d or w, not %q", unit)
	}
	if n > int64(1<<62)/int64(d) {
		return 0, fmt.Errorf("time value out of range")
	}
	return time.Duration(n) * d, nil
}

// SplitList splits a list value as Postfix's mystrtokq(3) does: separators
// are commas and whitespace, and text inside { } (at any depth) stays in one
// element, braces included, so "inline:{ a=1, b=2 }" is one table.
func SplitList(v string) []string { return splitBraced(v, true) }

// SplitWords is SplitList without commas as separators, Postfix's
// argv_splitq(3) on blanks: "permit_mynetworks,reject" stays one word, as
// smtpd_check's script language reads it.
func SplitWords(v string) []string { return splitBraced(v, false) }

func splitBraced(v string, commas bool) []string {
	var out []string
	level, start := 0, -1
	for i := 0; i < len(v); i++ {
		c := v[i]
		sep := level == 0 && (commas && c == ',' || isSpace(c))
		if sep {
			if start >= 0 {
				out = append(out, v[start:i])
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
		switch c {
		case '{':
			level++
		case '}':
			if level > 0 {
				level--
			}
		}
	}
	if start >= 0 {
		out = append(out, v[start:])
	}
	return out
}

// Unescape interprets the C-style escapes of Postfix's unescape(3), which
// parameter values such as pipe(8)'s eol= and smtpd_expansion_filter use:
// \a \b \f \n \r \t \v \ddd (up to three octal digits) and \\. Any other
// backslash is kept as written, as Postfix's unescape() does.
func Unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch c = s[i]; c {
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case '\\':
			b.WriteByte('\\')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := 0
			for n := 0; n < 3 && i < len(s) && s[i] >= '0' && s[i] <= '7'; n++ {
				v = v*8 + int(s[i]-'0')
				i++
			}
			i--
			b.WriteByte(byte(v))
		default:
			b.WriteByte('\\')
			b.WriteByte(c)
		}
	}
	return b.String()
}
