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
// through DotWriter: LF line ends made CRLF, a final line end added.
func dotModel(in []byte) []byte {
	var out []byte
	for i, c := range in {
		if c == '\n' && (i == 0 || in[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if n := len(out); n > 0 && out[n-1] != '\n' {
		if out[n-1] != '\r' {
			out = append(out, '\r')
		}
		out = append(out, '\n')
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
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		k := int(cut) % (len(in) + 1)
		var wire bytes.Buffer
		d := NewDotWriter(&wire)
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
		if want := dotModel(in); !bytes.Equal(got.Bytes(), want) {
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
