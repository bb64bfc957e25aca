package smtp

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestParseBareNewline(t *testing.T) {
	for in, want := range map[string]BareNewline{"no": BareNewlineNo, "YES": BareNewlineNormalize, "Normalize": BareNewlineNormalize, "reject": BareNewlineReject} {
		got, err := ParseBareNewline(in)
		if err != nil || got != want {
			t.Errorf("ParseBareNewline(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseBareNewline("maybe"); err == nil {
		t.Error("ParseBareNewline(maybe) accepted")
	}
}

type cmdResult struct {
	line string
	err  error
}

func readAll(in string, limit int, p BareNewline) []cmdResult {
	r := bufio.NewReaderSize(strings.NewReader(in), 16)
	var out []cmdResult
	for {
		line, err := ReadCommand(r, limit, p, 0)
		out = append(out, cmdResult{line, err})
		if err != nil && !errors.Is(err, ErrLineTooLong) && !errors.Is(err, ErrBareLF) && !errors.Is(err, ErrBareCR) {
			return out
		}
	}
}

func TestReadCommand(t *testing.T) {
	long := strings.Repeat("x", 40)
	cases := []struct {
		name  string
		in    string
		limit int
		p     BareNewline
		want  []cmdResult
	}{
		{"crlf", "HELO a\r\nQUIT\r\n", 0, BareNewlineNo, []cmdResult{{"HELO a", nil}, {"QUIT", nil}, {"", io.EOF}}},
		{"bare lf accepted", "HELO a\nQUIT\r\n", 0, BareNewlineNormalize, []cmdResult{{"HELO a", nil}, {"QUIT", nil}, {"", io.EOF}}},
		{"bare cr kept", "HELO a\rb\r\n", 0, BareNewlineNo, []cmdResult{{"HELO a\rb", nil}, {"", io.EOF}}},
		{"bare lf refused", "HELO a\nQUIT\r\n", 0, BareNewlineReject, []cmdResult{{"", ErrBareLF}, {"QUIT", nil}, {"", io.EOF}}},
		{"bare cr refused", "HELO a\rb\r\nQUIT\r\n", 0, BareNewlineReject, []cmdResult{{"", ErrBareCR}, {"QUIT", nil}, {"", io.EOF}}},
		{"cr cr lf", "NOOP\r\r\n", 0, BareNewlineReject, []cmdResult{{"", ErrBareCR}, {"", io.EOF}}},
		{"at limit", long + "\r\n", 40, BareNewlineReject, []cmdResult{{long, nil}, {"", io.EOF}}},
		{"over limit", long + "y\r\nNOOP\r\n", 40, BareNewlineReject, []cmdResult{{"", ErrLineTooLong}, {"NOOP", nil}, {"", io.EOF}}},
		{"far over limit", strings.Repeat(long, 10) + "\r\nNOOP\r\n", 40, BareNewlineNo, []cmdResult{{"", ErrLineTooLong}, {"NOOP", nil}, {"", io.EOF}}},
		{"unterminated", "NOOP", 0, BareNewlineNo, []cmdResult{{"", io.ErrUnexpectedEOF}}},
		{"empty line", "\r\n", 0, BareNewlineNo, []cmdResult{{"", nil}, {"", io.EOF}}},
	}
	for _, c := range cases {
		got := readAll(c.in, c.limit, c.p)
		if len(got) != len(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i].line != c.want[i].line || !errors.Is(got[i].err, c.want[i].err) || (c.want[i].err == nil) != (got[i].err == nil) {
				t.Errorf("%s: [%d] got %q %v, want %q %v", c.name, i, got[i].line, got[i].err, c.want[i].line, c.want[i].err)
			}
		}
	}
	_, err := ReadCommand(bufio.NewReader(strings.NewReader("A\n")), 0, BareNewlineReject, 521)
	if r, ok := ReplyOf(err); !ok || r.String() != "521 5.5.2 Error: bare <LF> received" {
		t.Errorf("reply = %v %v", r, ok)
	}
}
