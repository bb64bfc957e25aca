package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// hidden is the second transaction a smuggling attack hides behind a fake
// end-of-data; it must end up as message content, never as commands.
const hidden = "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSpoofed\r\n"

// smuggleVariants are the published SMTP smuggling end-of-data forms
// (SEC Consult, December 2023) and their relatives.
var smuggleVariants = []string{"\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r", "\r.\r\n", "\r\n.\n", "\n.\r", "\r\n\n.\r\n"}

func TestDataSmuggling(t *testing.T) {
	for _, v := range smuggleVariants {
		for _, p := range []BareNewline{BareNewlineNo, BareNewlineNormalize, BareNewlineReject} {
			in := "Subject: hi\r\n\r\nbody" + v + hidden + "\r\n.\r\nQUIT\r\n"
			r := bufio.NewReaderSize(strings.NewReader(in), 16)
			var out bytes.Buffer
			_, err := ReadData(r, &out, DataOptions{BareNewline: p})
			if p == BareNewlineReject {
				if !errors.Is(err, ErrBareLF) && !errors.Is(err, ErrBareCR) {
					t.Errorf("%q reject: err = %v, want a bare newline refusal", v, err)
				}
			} else {
				if err != nil {
					t.Errorf("%q policy %d: %v", v, p, err)
				}
				if !strings.Contains(out.String(), "MAIL FROM:<evil@attacker.example>\r\n") {
					t.Errorf("%q policy %d: hidden command not kept as content: %q", v, p, out.String())
				}
			}
			// Whatever the policy, the session is in sync: the next
			// command is QUIT, not the hidden MAIL FROM.
			cmd, err := ReadCommand(r, 0, p, 0)
			if err != nil || cmd != "QUIT" {
				t.Errorf("%q policy %d: next command %q %v, want QUIT", v, p, cmd, err)
			}
		}
	}
}

func TestDataContent(t *testing.T) {
	cases := []struct {
		name, in, want, rest string
		p                    BareNewline
		err                  error
	}{
		{"empty", ".\r\nNOOP", "", "NOOP", BareNewlineReject, nil},
		{"simple", "a\r\nb\r\n.\r\nX", "a\r\nb\r\n", "X", BareNewlineReject, nil},
		{"unstuff", "..\r\n..a\r\n.b\r\n...\r\n.\r\n", ".\r\n.a\r\nb\r\n..\r\n", "", BareNewlineReject, nil},
		{"bare lf normalised", "a\nb\r\n.\r\n", "a\r\nb\r\n", "", BareNewlineNormalize, nil},
		{"no end after bare lf", "a\n.\r\n", "", "", BareNewlineNormalize, io.ErrUnexpectedEOF},
		{"stuffed after bare lf", "a\n..b\r\n.\r\n", "a\r\n.b\r\n", "", BareNewlineNo, nil},
		{"lone dot after bare lf kept", "a\n.\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", "", BareNewlineNo, nil},
		{"bare cr kept", "a\rb\r\n.\r\n", "a\rb\r\n", "", BareNewlineNormalize, nil},
		{"bare lf refused", "a\nb\r\n.\r\nQ", "", "Q", BareNewlineReject, ErrBareLF},
		{"bare cr refused", "a\rb\r\n.\r\nQ", "", "Q", BareNewlineReject, ErrBareCR},
		{"cr before crlf", "a\r\r\n.\r\nQ", "", "Q", BareNewlineReject, ErrBareCR},
		{"dot space", ". \r\n.\r\n", " \r\n", "", BareNewlineReject, nil},
		{"eof", "a\r\n", "a\r\n", "", BareNewlineNo, io.ErrUnexpectedEOF},
		{"eof mid line", "a\r\nb", "a\r\n", "", BareNewlineNo, io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		for _, size := range []int{16, 4096} {
			r := bufio.NewReaderSize(strings.NewReader(c.in), size)
			var out bytes.Buffer
			_, err := ReadData(r, &out, DataOptions{BareNewline: c.p})
			if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
				t.Errorf("%s/%d: err %v, want %v", c.name, size, err, c.err)
			}
			if c.err == nil && out.String() != c.want {
				t.Errorf("%s/%d: stored %q, want %q", c.name, size, out.String(), c.want)
			}
			rest, _ := io.ReadAll(r)
			if c.err != io.ErrUnexpectedEOF && string(rest) != c.rest {
				t.Errorf("%s/%d: rest %q, want %q", c.name, size, rest, c.rest)
			}
		}
	}
}

func TestDataLongLines(t *testing.T) {
	long := strings.Repeat("x", 1000)
	for _, mid := range []string{"\r", "\r\r", "."} {
		in := "." + long + mid + long + "\r\n.\r\nNEXT"
		for _, size := range []int{16, 17, 31, 4096} {
			r := bufio.NewReaderSize(strings.NewReader(in), size)
			var out bytes.Buffer
			res, err := ReadData(r, &out, DataOptions{BareNewline: BareNewlineNo})
			want := long + mid + long + "\r\n"
			if err != nil || out.String() != want {
				t.Errorf("%q/%d: %v, stored %d bytes, want %d", mid, size, err, out.Len(), len(want))
			}
			if res.Size != int64(len(want)) || res.LongestLine != int64(len(want)-2) {
				t.Errorf("%q/%d: result %+v", mid, size, res)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "NEXT" {
				t.Errorf("%q/%d: rest %q", mid, size, rest)
			}
			// Under reject the CRs in the middle are bare.
			r = bufio.NewReaderSize(strings.NewReader(in), size)
			_, err = ReadData(r, io.Discard, DataOptions{BareNewline: BareNewlineReject})
			if (mid != ".") != errors.Is(err, ErrBareCR) {
				t.Errorf("%q/%d reject: %v", mid, size, err)
			}
		}
	}
}

func TestDataSizeLimit(t *testing.T) {
	in := "12345678\r\n12345678\r\n.\r\nNEXT\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	var out bytes.Buffer
	res, err := ReadData(r, &out, DataOptions{SizeLimit: 15})
	if rep, ok := ReplyOf(err); !errors.Is(err, ErrTooBig) || !ok || rep.String() != "552 5.3.4 Message size exceeds fixed limit" {
		t.Errorf("err %v", err)
	}
	if out.Len() > 15 || !strings.HasPrefix("12345678\r\n", out.String()) || res.Size != 20 {
		t.Errorf("stored %q, size %d", out.String(), res.Size)
	}
	if cmd, _ := ReadCommand(r, 0, BareNewlineReject, 0); cmd != "NEXT" {
		t.Errorf("next %q", cmd)
	}
	r = bufio.NewReader(strings.NewReader(in))
	if _, err := ReadData(r, io.Discard, DataOptions{SizeLimit: 20}); err != nil {
		t.Errorf("at limit: %v", err)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n += len(p); w.n > 5 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestDataWriteError(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("abc\r\ndefgh\r\n.\r\nNEXT\r\n"))
	_, err := ReadData(r, &failWriter{}, DataOptions{})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("err %v", err)
	}
	if _, ok := ReplyOf(err); ok {
		t.Error("write error carries a reply")
	}
	if cmd, _ := ReadCommand(r, 0, BareNewlineReject, 0); cmd != "NEXT" {
		t.Errorf("next %q", cmd)
	}
}

// session plays a tiny server on conn: DATA, then the next command.
func session(conn net.Conn, p BareNewline) (string, string, error) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	var out bytes.Buffer
	_, derr := ReadData(r, &out, DataOptions{BareNewline: p})
	cmd, err := ReadCommand(r, 0, p, 0)
	if err != nil {
		return out.String(), "", err
	}
	w := bufio.NewWriter(conn)
	NewReply(221, "2.0.0", "Bye").WriteTo(w)
	w.Flush()
	return out.String(), cmd, derr
}

func TestDataOverPipe(t *testing.T) {
	for _, v := range smuggleVariants {
		srv, cli := net.Pipe()
		done := make(chan [2]string)
		go func() {
			s, c, _ := session(srv, BareNewlineNormalize)
			done <- [2]string{s, c}
		}()
		msg := "a" + v + hidden + ".\r\nQUIT\r\n"
		// Write byte by byte so every split point is exercised.
		for i := 0; i < len(msg); i++ {
			if _, err := cli.Write([]byte{msg[i]}); err != nil {
				t.Fatal(err)
			}
		}
		rep, err := ReadReply(bufio.NewReader(cli), 0)
		if err != nil || rep.Code != 221 {
			t.Errorf("%q: reply %v %v", v, rep, err)
		}
		got := <-done
		cli.Close()
		if got[1] != "QUIT" || !strings.Contains(got[0], "RCPT TO:<victim@example.org>") {
			t.Errorf("%q: stored %q, next %q", v, got[0], got[1])
		}
	}
}

func TestDataOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	defer ln.Close()
	type res struct {
		stored, cmd string
		err         error
	}
	done := make(chan res, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- res{err: err}
			return
		}
		s, c, e := session(conn, BareNewlineReject)
		done <- res{s, c, e}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := strings.Repeat("line of text\r\n", 5000)
	go io.WriteString(conn, "..dot\r\n"+body+"x\n.\n"+hidden+".\r\nQUIT\r\n")
	rep, err := ReadReply(bufio.NewReader(conn), 0)
	if err != nil || rep.String() != "221 2.0.0 Bye" {
		t.Errorf("reply %v %v", rep, err)
	}
	got := <-done
	if got.cmd != "QUIT" || !errors.Is(got.err, ErrBareLF) {
		t.Errorf("next %q err %v", got.cmd, got.err)
	}
}

func TestBDAT(t *testing.T) {
	for _, c := range []struct {
		line string
		size int64
		last bool
		ok   bool
	}{
		{"BDAT 0 LAST", 0, true, true},
		{"BDAT 100", 100, false, true},
		{"bdat 7 last", 7, true, true},
		{"BDAT", 0, false, false},
		{"BDAT x", 0, false, false},
		{"BDAT -1", 0, false, false},
		{"BDAT 1 FIRST", 0, false, false},
		{"BDAT 1 LAST x", 0, false, false},
		{"BDAT 99999999999999999999", 0, false, false},
	} {
		size, last, err := ParseBDAT(Tokenize(c.line))
		if (err == nil) != c.ok || size != c.size || last != c.last {
			t.Errorf("ParseBDAT(%q) = %d %v %v", c.line, size, last, err)
		}
		if err != nil {
			if r, _ := ReplyOf(err); r.String() != "501 5.5.4 Syntax: BDAT count [LAST]" {
				t.Errorf("reply %v", r)
			}
		}
	}
	// Chunks are exact byte counts: a dot line and a fake terminator are
	// content, and the next command follows the last byte.
	in := "a\r\n.\r\nMA" + "IL FROM:<x>\r\nNEXT\r\n"
	r := bufio.NewReaderSize(strings.NewReader(in), 16)
	var out bytes.Buffer
	cr := NewChunkReader(&out, DataOptions{BareNewline: BareNewlineReject, SizeLimit: 100})
	if err := cr.ReadChunk(r, 8); err != nil {
		t.Fatal(err)
	}
	if err := cr.ReadChunk(r, 13); err != nil {
		t.Fatal(err)
	}
	res, err := cr.Finish()
	if err != nil || out.String() != "a\r\n.\r\nMAIL FROM:<x>\r\n" || res.Size != 21 {
		t.Errorf("BDAT stored %q %+v %v", out.String(), res, err)
	}
	if cmd, _ := ReadCommand(r, 0, BareNewlineReject, 0); cmd != "NEXT" {
		t.Errorf("next %q", cmd)
	}
	// CR at the end of one chunk and LF at the start of the next is CRLF.
	for _, c := range []struct {
		chunks []string
		p      BareNewline
		limit  int64
		err    error
	}{
		{[]string{"a\r", "\nb\r\n"}, BareNewlineReject, 0, nil},
		{[]string{"a\r", "b\r\n"}, BareNewlineReject, 0, ErrBareCR},
		{[]string{"a", "\nb"}, BareNewlineReject, 0, ErrBareLF},
		{[]string{"a\r"}, BareNewlineReject, 0, ErrBareCR},
		{[]string{"a\n"}, BareNewlineNormalize, 0, nil},
		{[]string{"1234", "5678"}, BareNewlineNo, 7, ErrTooBig},
		{[]string{"1234", "567"}, BareNewlineNo, 7, nil},
	} {
		var all string
		for _, ch := range c.chunks {
			all += ch
		}
		r := bufio.NewReader(strings.NewReader(all + "NEXT\r\n"))
		cr := NewChunkReader(io.Discard, DataOptions{BareNewline: c.p, SizeLimit: c.limit})
		for _, ch := range c.chunks {
			if err := cr.ReadChunk(r, int64(len(ch))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cr.Finish(); !errors.Is(err, c.err) || (c.err == nil && err != nil) {
			t.Errorf("%q: %v, want %v", c.chunks, err, c.err)
		}
		if cr.Failed() != (c.err != nil) {
			t.Errorf("%q: Failed() = %v", c.chunks, cr.Failed())
		}
		if cmd, _ := ReadCommand(r, 0, BareNewlineReject, 0); cmd != "NEXT" {
			t.Errorf("%q: next %q", c.chunks, cmd)
		}
	}
	r = bufio.NewReader(strings.NewReader("abc"))
	if err := NewChunkReader(io.Discard, DataOptions{}).ReadChunk(r, 5); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short chunk: %v", err)
	}
}

func BenchmarkReadData(b *testing.B) {
	msg := []byte(strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\r\n", 1600) + ".\r\n")
	b.SetBytes(int64(len(msg)))
	rd := bytes.NewReader(msg)
	r := bufio.NewReader(rd)
	for i := 0; i < b.N; i++ {
		rd.Reset(msg)
		r.Reset(rd)
		if _, err := ReadData(r, io.Discard, DataOptions{BareNewline: BareNewlineReject}); err != nil {
			b.Fatal(err)
		}
	}
}
