package mbox

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"
)

// mboxoNormal is what an mbox reader can give back of a queued message:
// CRLF as LF, a final newline, and ">From " at a line start read as
// "From " (the mboxo format cannot tell the two apart, in Postfix as in
// moat).
func mboxoNormal(m string) string {
	m = strings.ReplaceAll(m, "\r\n", "\n")
	if m != "" && !strings.HasSuffix(m, "\n") {
		m += "\n"
	}
	lines := strings.SplitAfter(m, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ">From ") {
			lines[i] = l[1:]
		}
	}
	return strings.Join(lines, "")
}

// FuzzRoundTrip appends messages split from the input and reads them back
// with a reader splitting on From_ lines: every message must come back
// whole and in order, and no body line may pass for a separator,
// whatever the chunking of the input.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n",
		"From here\r\nFrom\r\n>From x\r\nFro\r\n",
		"a\rb\r\n\r\n\r",
		"",
		"no newline",
		"\x00From x\x00From \r\n",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		if len(data) > 1<<16 {
			return
		}
		msgs := strings.Split(string(data), "\x00")
		if len(msgs) > 8 {
			msgs = msgs[:8]
		}
		path := filepath.Join(t.TempDir(), "mbox")
		for _, m := range msgs {
			r := &chunkReader{data: []byte(m), n: int(chunk%17) + 1}
			if err := Deliver(path, r, Options{Create: true, Time: when}); err != nil {
				t.Fatal(err)
			}
		}
		got := split(read(t, path))
		if len(got) != len(msgs) {
			t.Fatalf("%d messages back, want %d", len(got), len(msgs))
		}
		for i, m := range msgs {
			if want := mboxoNormal(m); got[i].body != want {
				t.Fatalf("message %d: %q, want %q", i, got[i].body, want)
			}
		}
	})
}

// chunkReader hands out data n bytes at a time, to split "From " and
// CRLF across reads.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[k:]
	return k, nil
}

// FuzzQuoter checks the streaming writer alone against a line-at-a-time
// model of mail_copy().
func FuzzQuoter(f *testing.F) {
	f.Add([]byte("From x\r\nFrom\r\nFFrom \r\n"), uint8(1))
	f.Add([]byte("\r\r\n\rFrom "), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		var out bytes.Buffer
		q := newQuoter(&out)
		n := int(chunk%13) + 1
		for i := 0; i < len(data); i += n {
			q.write(data[i:min(i+n, len(data))])
		}
		q.finish()
		if got, want := out.String(), model(string(data)); got != want {
			t.Fatalf("quoted %q\ngot  %q\nwant %q", data, got, want)
		}
	})
}

func model(m string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(strings.ReplaceAll(m, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(l, "From ") {
			b.WriteByte('>')
		}
		b.WriteString(l)
	}
	s := b.String()
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s + "\n"
}
