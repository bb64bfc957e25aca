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
func SplitList(v string) []string {
	var out []string
	level, start := 0, -1
	for i := 0; i < len(v); i++ {
		c := v[i]
		sep := level == 0 && (c == ',' || isSpace(c))
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
