package postmap

import (
	"strings"
	"testing"
)

// FuzzMessageKeys checks the -h/-b/-m message reader: no panics, and no
// input line is lost or invented (only the end of the primary headers may
// add one empty key).
func FuzzMessageKeys(f *testing.F) {
	for _, s := range []string{
		"Subject: hello\n  continued\nX-A: b\n\nbody line\n\nbody after\n",
		"From foo\nSubject: hi\n\nbody\n",
		"A : b\n\tc\nnot a header\n",
		"",
		"\n\n",
		"X: y",
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n\nS: x\n\nbody\n--b--\n",
		"Content-Type: multipart/digest; boundary=\"d d\"\n\n--d d\n\nA: b\n--d d--\n",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, msg string, mime bool) {
		o := &opts{headers: true, body: true, mime: mime}
		var keys []string
		err := o.messageKeys(strings.NewReader(msg), func(k string) error {
			keys = append(keys, k)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		in := strings.Count(msg, "\n")
		if msg != "" && !strings.HasSuffix(msg, "\n") {
			in++
		}
		out := 0
		for _, k := range keys {
			out += strings.Count(k, "\n") + 1
		}
		if out < in || out > in+1 {
			t.Fatalf("%d input lines became %d key lines: %q", in, out, keys)
		}
	})
}
