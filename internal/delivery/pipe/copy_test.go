package pipe

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func readAll(t *testing.T, msg string, o copyOptions) string {
	t.Helper()
	if o.eol == "" {
		o.eol = "\n"
	}
	b, err := io.ReadAll(newContentReader(strings.NewReader(msg), o))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCopyFlags(t *testing.T) {
	msg := "Subject: hi\r\n\r\nFrom me\r\n.dot\r\nbare\rcr\r\nlast"
	when := time.Date(2026, 11, 2, 9, 8, 7, 0, time.Local)
	for _, tc := range []struct {
		o    copyOptions
		want string
	}{
		{copyOptions{}, "Subject: hi\n\nFrom me\n.dot\nbare\rcr\nlast\n"},
		{copyOptions{eol: "\r\n"}, "Subject: hi\r\n\r\nFrom me\r\n.dot\r\nbare\rcr\r\nlast\r\n"},
		{copyOptions{flags: flagQuoteFrom | flagDot | flagBlank},
			"Subject: hi\n\n>From me\n..dot\nbare\rcr\nlast\n\n"},
		{copyOptions{flags: flagFrom | flagReturnPath | flagOrigRcpt | flagDelivered,
			sender: "a b@x", orig: "o@x", rcpt: "r@x", now: when},
			"From \"a b\"@x  Mon Nov  2 09:08:07 2026\nReturn-Path: <\"a b\"@x>\nX-Original-To: o@x\nDelivered-To: r@x\n" +
				"Subject: hi\n\nFrom me\n.dot\nbare\rcr\nlast\n"},
		{copyOptions{flags: flagFrom | flagReturnPath, now: when},
			"From MAILER-DAEMON  Mon Nov  2 09:08:07 2026\nReturn-Path: <>\nSubject: hi\n\nFrom me\n.dot\nbare\rcr\nlast\n"},
		{copyOptions{flags: flagDelivered, rcpt: "x\r\nBcc: y@z"}, "Delivered-To: \"x??Bcc: y\"@z\nSubject: hi\n\nFrom me\n.dot\nbare\rcr\nlast\n"},
	} {
		if got := readAll(t, msg, tc.o); got != tc.want {
			t.Errorf("flags %x:\n got %q\nwant %q", tc.o.flags, got, tc.want)
		}
	}
}

// TestCopyLongLines checks that quoting applies only at real line starts
// and that a CRLF split across the reader's buffer is still one line end.
func TestCopyLongLines(t *testing.T) {
	long := strings.Repeat("x", 64<<10-1)
	msg := long + "\r\nFrom a\r\n" + strings.Repeat("y", 64<<10) + "From b\r\n"
	got := readAll(t, msg, copyOptions{flags: flagQuoteFrom})
	want := long + "\n>From a\n" + strings.Repeat("y", 64<<10) + "From b\n"
	if got != want {
		t.Errorf("long lines: got %d bytes, want %d; diff at %d", len(got), len(want), diffAt(got, want))
	}
	// One byte at a time through the source.
	r := newContentReader(iotest.OneByteReader(strings.NewReader("a\r\n.b\r\nc")), copyOptions{eol: "\n", flags: flagDot})
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "a\n..b\nc\n" {
		t.Errorf("one byte reader: %q %v", b, err)
	}
}

func diffAt(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestCopyReadError(t *testing.T) {
	boom := errors.New("content sum mismatch")
	r := newContentReader(io.MultiReader(strings.NewReader("a\r\n"), iotest.ErrReader(boom)), copyOptions{eol: "\n"})
	b, err := io.ReadAll(r)
	if !errors.Is(err, boom) || r.err != boom || string(b) != "a\n" {
		t.Errorf("got %q, %v, kept %v", b, err, r.err)
	}
}

func TestDeliveredTo(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want bool
	}{
		{"Delivered-To: Joe@Example.com\r\nSubject: x\r\n\r\nbody\r\n", true},
		{"Subject: x\r\nDelivered-To:\r\n joe@example.com\r\n\r\n", true},
		{"Subject: x\r\n\r\nDelivered-To: joe@example.com\r\n", false},
		{"Delivered-To: other@example.com\r\n\r\n", false},
		{"X-Delivered-To: joe@example.com\r\n\r\n", false},
		{"Delivered-To: joe@example.com", true},
		{"", false},
	} {
		got, err := deliveredTo(strings.NewReader(tc.msg), "joe@example.com")
		if err != nil || got != tc.want {
			t.Errorf("%q: got %v %v, want %v", tc.msg, got, err, tc.want)
		}
	}
	// A header line longer than the reader's buffer is skipped whole.
	msg := "Subject: " + strings.Repeat("z", 20<<10) + "\r\nDelivered-To: joe@example.com\r\n\r\n"
	if got, err := deliveredTo(strings.NewReader(msg), "joe@example.com"); err != nil || !got {
		t.Errorf("after a long line: %v %v", got, err)
	}
}

func FuzzCopy(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nFrom a\r\n.b\r\nc"), uint16(0x7ff), "\n")
	f.Add([]byte("\r\r\n\n."), uint16(flagDot|flagBlank), "\r\n")
	f.Fuzz(func(t *testing.T, msg []byte, flags uint16, eol string) {
		o := copyOptions{flags: int(flags) & 0x7ff, eol: eol, sender: "s@x", orig: "o@x", rcpt: "r@x"}
		got, err := io.ReadAll(newContentReader(bytes.NewReader(msg), o))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(got, []byte(o.prefix())) {
			t.Fatal("prefix missing")
		}
		// With eol "\n" and no quoting, the body is the message with CRLF
		// made LF and a final line end.
		if eol == "\n" && o.flags&(flagDot|flagQuoteFrom|flagBlank) == 0 {
			want := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
			if len(want) > 0 && want[len(want)-1] != '\n' {
				want = append(want, '\n')
			}
			if body := got[len(o.prefix()):]; !bytes.Equal(body, want) {
				t.Fatalf("body %q, want %q", body, want)
			}
		}
		if _, err := deliveredTo(bytes.NewReader(msg), "r@x"); err != nil {
			t.Fatal(err)
		}
	})
}
