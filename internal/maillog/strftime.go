package maillog

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Strftime expands the strftime(3) conversions of a maillog_file_rotate_suffix
// value (default "%Y%m%d-%H%M%S") at t, for the rotated file's name.
// It knows the C-locale conversions a file-name suffix plausibly uses; an
// unknown one, or a result holding '/' or NUL (which would put the rotated
// file in another directory), is an error rather than a surprise path.
func Strftime(format string, t time.Time) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		ch := format[i]
		if ch != '%' {
			b.WriteByte(ch)
			continue
		}
		i++
		if i >= len(format) {
			return "", errors.New("strftime: format ends in '%'")
		}
		switch c := format[i]; c {
		case '%':
			b.WriteByte('%')
		case 'Y':
			b.WriteString(strconv.Itoa(t.Year()))
		case 'C':
			pad2(&b, t.Year()/100)
		case 'y':
			pad2(&b, t.Year()%100)
		case 'm':
			pad2(&b, int(t.Month()))
		case 'd':
			pad2(&b, t.Day())
		case 'e':
			if t.Day() < 10 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.Itoa(t.Day()))
		case 'H':
			pad2(&b, t.Hour())
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			pad2(&b, h)
		case 'M':
			pad2(&b, t.Minute())
		case 'S':
			pad2(&b, t.Second())
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'b', 'h':
			b.WriteString(t.Month().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		case 'F':
			b.WriteString(t.Format("2006-01-02"))
		case 'T':
			b.WriteString(t.Format("15:04:05"))
		case 's':
			b.WriteString(strconv.FormatInt(t.Unix(), 10))
		case 'u':
			wd := int(t.Weekday())
			if wd == 0 {
				wd = 7
			}
			b.WriteString(strconv.Itoa(wd))
		case 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'Z':
			b.WriteString(t.Format("MST"))
		default:
			return "", fmt.Errorf("strftime: unsupported conversion %%%c", c)
		}
	}
	s := b.String()
	if s == "" {
		return "", errors.New("strftime: empty result")
	}
	if strings.ContainsAny(s, "/\x00") {
		return "", fmt.Errorf("strftime: result %q contains '/' or NUL", s)
	}
	return s, nil
}

func pad2(b *strings.Builder, n int) {
	if n < 10 && n >= 0 {
		b.WriteByte('0')
	}
	b.WriteString(strconv.Itoa(n))
}
