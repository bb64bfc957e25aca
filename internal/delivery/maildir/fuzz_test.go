package maildir

import (
	"bytes"
	"testing"
)

// FuzzConvertCRLF checks the streaming converter against a whole-input
// reference for any split of the input into writes: a CRLF cut between two
// writes must still become one LF.
func FuzzConvertCRLF(f *testing.F) {
	f.Add([]byte("a\r\nb\r\n"), []byte{1})
	f.Add([]byte("\r\r\n\r"), []byte{1, 1, 1})
	f.Add([]byte("x\ry\r\n.\r\n"), []byte{2, 0, 3})
	f.Add([]byte{}, []byte{})
	f.Add([]byte("\r"), []byte{0})
	f.Fuzz(func(t *testing.T, data, splits []byte) {
		var out bytes.Buffer
		lw := &lfWriter{w: &out}
		rest := data
		for _, s := range splits {
			n := min(int(s), len(rest))
			if _, err := lw.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if _, err := lw.Write(rest); err != nil {
			t.Fatal(err)
		}
		if err := lw.Flush(); err != nil {
			t.Fatal(err)
		}
		want := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("convert(%q split %v) = %q, want %q", data, splits, out.Bytes(), want)
		}
		if lw.n != int64(len(want)) {
			t.Fatalf("counted %d bytes, wrote %d", lw.n, len(want))
		}
		if len(want) > 0 && lw.last != want[len(want)-1] {
			t.Fatalf("last byte %q, want %q", lw.last, want[len(want)-1])
		}
	})
}
