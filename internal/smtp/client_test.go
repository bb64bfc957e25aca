package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestParseEHLO(t *testing.T) {
	// Dovecot 2.3's LHLO reply, and oddities Postfix tolerates.
	r, err := ReadReply(bufio.NewReader(strings.NewReader(
		"250-vm\r\n250-8BITMIME\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n"+
			"250-size 10240000\r\n250-AUTH=PLAIN LOGIN\r\n250-!bogus\r\n250 DSN\r\n")), 0)
	if err != nil {
		t.Fatal(err)
	}
	e := ParseEHLO(r)
	if e.Name != "vm" {
		t.Errorf("name %q", e.Name)
	}
	for _, kw := range []string{"8bitmime", "CHUNKING", "ENHANCEDSTATUSCODES", "PIPELINING", "SIZE", "AUTH", "DSN"} {
		if !e.Has(kw) {
			t.Errorf("%s missing", kw)
		}
	}
	if e.Has("SMTPUTF8") || len(e.Keywords) != 7 {
		t.Errorf("keywords %v", e.Keywords)
	}
	if n, ok := e.SizeLimit(); !ok || n != 10240000 {
		t.Errorf("size %d %v", n, ok)
	}
	if e.Keywords["AUTH"] != "PLAIN LOGIN" {
		t.Errorf("auth %q", e.Keywords["AUTH"])
	}
	if n, ok := ParseEHLO(Reply{Code: 250, Lines: []string{"x", "SIZE"}}).SizeLimit(); !ok || n != 0 {
		t.Errorf("bare SIZE: %d %v", n, ok)
	}
	if _, ok := ParseEHLO(Reply{Code: 250, Lines: []string{"x"}}).SizeLimit(); ok {
		t.Error("SIZE not offered but ok")
	}
}

func TestReplyLogText(t *testing.T) {
	r, _ := ReadReply(bufio.NewReader(strings.NewReader("550-5.1.1 first\r\n550 5.1.1 second\r\n")), 0)
	if got := r.LogText(); got != "550-5.1.1 first 550 5.1.1 second" {
		t.Errorf("LogText %q", got)
	}
	if r.DSN() != "5.1.1" {
		t.Errorf("DSN %q", r.DSN())
	}
	for code, want := range map[int]string{250: "2.0.0", 451: "4.0.0", 554: "5.0.0"} {
		if got := (Reply{Code: code, Lines: []string{"x"}}).DSN(); got != want {
			t.Errorf("DSN(%d) = %s, want %s", code, got, want)
		}
	}
	if got := NewReply(451, "", "try later").LogText(); got != "451 try later" {
		t.Errorf("LogText %q", got)
	}
}

func TestDotWriter(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ".\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a", "a\r\n.\r\n"},
		{".\r\n", "..\r\n.\r\n"},
		{"x\r\n.\r\n..y\r\n", "x\r\n..\r\n...y\r\n.\r\n"},
		{"bare\nlf\n.", "bare\r\nlf\r\n..\r\n.\r\n"},
		{"cr\r", "cr\r\n.\r\n"},
		{"a\rb\r\n", "a\rb\r\n.\r\n"},
	} {
		// Every split point: the state must survive write boundaries.
		for cut := 0; cut <= len(tc.in); cut++ {
			var b bytes.Buffer
			d := NewDotWriter(&b)
			d.Write([]byte(tc.in[:cut]))
			d.Write([]byte(tc.in[cut:]))
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want || d.Written() != int64(b.Len()) {
				t.Errorf("%q cut %d: %q (%d), want %q", tc.in, cut, b.String(), d.Written(), tc.want)
			}
		}
	}
}

func TestDotWriterLineLimit(t *testing.T) {
	for _, tc := range []struct {
		limit   int
		in, out string
	}{
		{5, "12345\r\n", "12345\r\n.\r\n"},
		{5, "123456\r\n", "12345\r\n 6\r\n.\r\n"},
		{5, "1234567890abc", "12345\r\n 6789\r\n 0abc\r\n.\r\n"},
		{5, ".2345678\r\n.\r\n", "..2345\r\n 678\r\n..\r\n.\r\n"},
		{5, "1234\r\r\n", "1234\r\r\n.\r\n"},
		{5, "12345\r6\r\n", "12345\r\n \r6\r\n.\r\n"},
		{1, "abc\r\n", "a\r\n b\r\n c\r\n.\r\n"},
	} {
		for cut := 0; cut <= len(tc.in); cut++ {
			var b bytes.Buffer
			d := NewDotWriter(&b)
			d.LineLimit = tc.limit
			d.Write([]byte(tc.in[:cut]))
			d.Write([]byte(tc.in[cut:]))
			d.Close()
			if b.String() != tc.out {
				t.Errorf("limit %d %q cut %d: %q, want %q", tc.limit, tc.in, cut, b.String(), tc.out)
			}
		}
	}
}

type brokenWriter struct{ n int }

func (f *brokenWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("broken pipe")
	}
	f.n--
	return len(p), nil
}

func TestDotWriterError(t *testing.T) {
	d := NewDotWriter(&brokenWriter{n: 1})
	if _, err := d.Write([]byte("a\r\nb\r\n")); err == nil {
		t.Fatal("no error")
	}
	if err := d.Close(); err == nil {
		t.Fatal("Close after error succeeded")
	}
}

// dotModel is what a server's DATA reader should store for content sent
// through DotWriter: LF line ends made CRLF, a final line end added, and
// lines longer than limit (when positive) broken with CRLF SPACE.
func dotModel(in []byte, limit int) []byte {
	var norm []byte
	for i, c := range in {
		if c == '\n' && (i == 0 || in[i-1] != '\r') {
			norm = append(norm, '\r')
		}
		norm = append(norm, c)
	}
	if n := len(norm); n > 0 && norm[n-1] != '\n' {
		if norm[n-1] != '\r' {
			norm = append(norm, '\r')
		}
		norm = append(norm, '\n')
	}
	if limit <= 0 {
		return norm
	}
	var out []byte
	for _, line := range bytes.SplitAfter(norm, []byte("\r\n")) {
		content := bytes.TrimSuffix(line, []byte("\r\n"))
		col := 0
		for _, c := range content {
			if col >= limit {
				out = append(out, "\r\n "...)
				col = 1
			}
			out = append(out, c)
			col++
		}
		if len(content) < len(line) {
			out = append(out, "\r\n"...)
		}
	}
	return out
}

// FuzzDotWriter sends any content through DotWriter and reads it back
// with the server's ReadData: the body must end exactly at the writer's
// terminator (nothing smuggled out of the message, nothing left behind)
// and hold the content.
func FuzzDotWriter(f *testing.F) {
	f.Add([]byte("a\r\n.\r\nMAIL FROM:<x>\r\n"), uint16(3))
	f.Add([]byte(".\n.\r.\r\n\r\n."), uint16(1))
	f.Add([]byte("x\r"), uint16(1))
	f.Add([]byte("abcdefgh\r"), uint16(0x0208))
	f.Add([]byte("1234567\r\n.23456789\r\r\n"), uint16(0x0305))
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		// The high byte picks LineLimit (0: none), the low the cut.
		limit := int(cut>>8) % 8
		k := int(cut&0xff) % (len(in) + 1)
		var wire bytes.Buffer
		d := NewDotWriter(&wire)
		d.LineLimit = limit
		d.Write(in[:k])
		d.Write(in[k:])
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		wire.WriteString("NEXT\r\n")
		r := bufio.NewReaderSize(bytes.NewReader(wire.Bytes()), 16)
		var got bytes.Buffer
		if _, err := ReadData(r, &got, DataOptions{}); err != nil {
			t.Fatalf("ReadData: %v (wire %q)", err, wire.Bytes())
		}
		rest, _ := io.ReadAll(r)
		if string(rest) != "NEXT\r\n" {
			t.Fatalf("rest %q (wire %q)", rest, wire.Bytes())
		}
		if want := dotModel(in, limit); !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("stored %q, want %q", got.Bytes(), want)
		}
	})
}

func FuzzParseEHLO(f *testing.F) {
	f.Add([]byte("250-vm\r\n250-PIPELINING\r\n250-SIZE 100\r\n250 AUTH=PLAIN\r\n"))
	f.Add([]byte("250-x\r\n250- \r\n250 SIZE -1\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ReadReply(bufio.NewReader(bytes.NewReader(in)), 0)
		if err != nil {
			return
		}
		e := ParseEHLO(r)
		for kw := range e.Keywords {
			if kw != strings.ToUpper(kw) || !isKeyword(kw) || !e.Has(strings.ToLower(kw)) {
				t.Fatalf("keyword %q", kw)
			}
		}
		if n, _ := e.SizeLimit(); n < 0 {
			t.Fatalf("negative size %d", n)
		}
		_ = r.LogText()
		if d := r.DSN(); d[0] != byte('0'+r.Code/100) && r.Code/100 != 1 && r.Code/100 != 3 {
			t.Fatalf("DSN %s for %d", d, r.Code)
		}
	})
}
