package smtpd

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestMessageIDTap(t *testing.T) {
	for in, want := range map[string]string{
		"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <body@x>\r\n": "<a@b>",
		"message-id:\r\n <folded@x>\r\nX: y\r\n\r\n":                      "<folded@x>",
		"Message-Id : <sp@x>\r\n\r\n":                                     "<sp@x>",
		"Subject: x\r\n\r\n":                                              "",
		"Message-IDs: <no@x>\r\n\r\n":                                     "",
		"Message-ID: <first@x>\r\nMessage-ID: <second@x>\r\n\r\n":         "<first@x>",
	} {
		// Byte-at-a-time writes: the tap must not depend on line-sized writes.
		var out bytes.Buffer
		tap := &msgTap{w: &out}
		for i := 0; i < len(in); i++ {
			_, _ = tap.Write([]byte{in[i]})
		}
		if got := tap.messageID(); got != want {
			t.Errorf("%q: message-id %q, want %q", in, got, want)
		}
		if out.String() != in {
			t.Errorf("%q: passed through %q", in, out.String())
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrShortWrite }

func FuzzMessageIDTap(f *testing.F) {
	f.Add([]byte("Message-ID: <a@b>\r\n\r\nbody\r\n"), 3)
	f.Add([]byte("message-id:\r\n\t<x>\r\n\r\n"), 1)
	f.Fuzz(func(t *testing.T, in []byte, step int) {
		if step <= 0 || step > 64 {
			step = 7
		}
		var out bytes.Buffer
		tap := &msgTap{w: &out}
		for i := 0; i < len(in); i += step {
			end := min(i+step, len(in))
			if n, err := tap.Write(in[i:end]); n != end-i || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
		if !bytes.Equal(out.Bytes(), in) {
			t.Fatal("content changed")
		}
		if len(tap.messageID()) > maxMessageIDLen || strings.ContainsAny(tap.messageID(), "\r\n") {
			t.Fatalf("message-id %q", tap.messageID())
		}
		bad := &msgTap{w: failWriter{}}
		if n, err := bad.Write(in); n != len(in) || err != nil || (len(in) > 0 && bad.err == nil) {
			t.Fatalf("failing writer: %d %v %v", n, err, bad.err)
		}
	})
}
