package smtp

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"moat/internal/testutil"
)

// TestTokenizePostfixVectors reproduces Postfix's smtpd_token test driver
// (each input line echoed, then "Token type:  T" / "Token value: V" per
// token) over smtpd_token.in and compares with smtpd_token.ref byte for
// byte. There is no allowed difference.
func TestTokenizePostfixVectors(t *testing.T) {
	dir := filepath.Join(testutil.PostfixTests(t), "smtpd")
	in, err := os.ReadFile(filepath.Join(dir, "smtpd_token.in"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(dir, "smtpd_token.ref"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(in))
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		for _, tok := range Tokenize(line) {
			out.WriteString("Token type:  " + tok.Type.String() + "\n")
			out.WriteString("Token value: " + tok.Value + "\n")
		}
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("smtpd_token output differs:\n--- got\n%s\n--- want\n%s", out.Bytes(), want)
	}
}

func TestTokenizeEdges(t *testing.T) {
	cases := []struct {
		in   string
		want []Token
	}{
		{"", nil},
		{"   ", nil},
		{"MAIL FROM:<a@b> SIZE=10", []Token{{0, "MAIL"}, {0, "FROM:"}, {0, "<a@b>"}, {0, "SIZE=10"}}},
		{"RCPT TO: <a@b>", []Token{{0, "RCPT"}, {0, "TO:"}, {0, "<a@b>"}}},
		{"x:from:", []Token{{0, "x:from:"}}},
		{"a\\ b c", []Token{{0, "a\\ b"}, {0, "c"}}},
		{"a\\", []Token{{0, "a\\"}}},
		{"<a\\", []Token{{TokenError, "<a\\"}}},
		{"<a<b>c>d e", []Token{{0, "<a<b>c>d"}, {0, "e"}}},
		{`"<" x`, []Token{{0, `"<"`}, {0, "x"}}},
		{"\t helo \t x ", []Token{{0, "helo"}, {0, "x"}}},
	}
	for _, c := range cases {
		got := Tokenize(c.in)
		if len(got) != len(c.want) {
			t.Errorf("Tokenize(%q) = %v, want %v", c.in, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("Tokenize(%q)[%d] = %v, want %v", c.in, i, got[i], c.want[i])
			}
		}
	}
}
