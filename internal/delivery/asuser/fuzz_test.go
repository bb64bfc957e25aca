package asuser

import (
	"errors"
	"strings"
	"testing"

	"moat/internal/delivery"
)

// FuzzDecodeJob: whatever arrives on the job pipe, a job that passes has
// a known kind and an absolute, NUL-free path, and nothing panics.
func FuzzDecodeJob(f *testing.F) {
	for _, s := range []string{
		`{"Kind":"maildir","Path":"/var/mail/u/","UID":1000,"CheckUID":true}`,
		`{"Kind":"mbox","Path":"/var/mail/u","Mbox":{"Sender":"a@b","SizeLimit":10}}`,
		`{"Kind":"mbox","Path":"rel"}`,
		`{"Kind":"pipe","Path":"/x"}`,
		`{"Kind":"mbox","Path":"/a\u0000b"}`,
		`{`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		w, err := decodeJob(line)
		if err != nil {
			return
		}
		if (w.Kind != KindMaildir && w.Kind != KindMbox) || !strings.HasPrefix(w.Path, "/") || strings.ContainsRune(w.Path, 0) {
			t.Fatalf("accepted %+v", w)
		}
	})
}

// FuzzDecodeResult: only {"OK":true} with a clean exit is a success;
// every failure is a *delivery.Error with a 4 or 5 class DSN.
func FuzzDecodeResult(f *testing.F) {
	for _, s := range []string{
		`{"OK":true,"Path":"/m/new/x"}`,
		`{"OK":false,"DSN":"5.2.2","Text":"error writing message: File too large","Errno":27}`,
		`{"DSN":"2.0.0","Text":"fake"}`,
		`{"OK":"yes"}`, ``, `garbage`,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, rec []byte, crashed bool) {
		var waitErr error
		if crashed {
			waitErr = errors.New("signal: killed")
		}
		_, err := decodeResult(rec, waitErr, nil)
		if err == nil {
			if crashed || !strings.Contains(string(rec), "true") {
				t.Fatalf("success from %q (crashed %v)", rec, crashed)
			}
			return
		}
		var de *delivery.Error
		if !errors.As(err, &de) || !validDSN(de.DSN) || de.Text == "" {
			t.Fatalf("failure %#v from %q", err, rec)
		}
	})
}
