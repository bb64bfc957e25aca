package postmap

import (
	"strings"
	"testing"
)

// FuzzMessageKeys checks the -h/-b message reader: no panics, every header
// key starts like a header, and no input line is lost (the end of the
// headers adds at most one empty key).
func FuzzMessageKeys(f *testing.F) {
	for _, s := range []string{
		"Subject: hello\n  continued\nX-A: b\n\nbody line\n\nbody after\n",
		"From foo\nSubject: hi\n\nbody\n",
		"A : b\n\tc\nnot a header\n",
		"",
		"\n\n",
		"X: y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		o := &opts{headers: true, body: true}
		var hdrs, body []string
		inBody := false
		err := o.messageKeys(strings.NewReader(msg), func(k string) error {
			if !inBody && isHeader(k) {
				hdrs = append(hdrs, k)
				return nil
			}
			inBody = true
			body = append(body, k)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		in := strings.Count(msg, "\n")
		if msg != "" && !strings.HasSuffix(msg, "\n") {
			in++
		}
		out := len(body)
		for _, h := range hdrs {
			out += strings.Count(h, "\n") + 1
		}
		if out < in || out > in+1 {
			t.Fatalf("%d input lines became %d key lines: %q %q", in, out, hdrs, body)
		}
	})
}
