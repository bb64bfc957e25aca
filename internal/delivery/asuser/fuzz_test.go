package asuser

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
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

// FuzzRequest feeds the executor's parser of its less-privileged client's
// input: the request line, then the content frames. Neither may panic,
// read without bound, or accept a request of the wrong shape.
func FuzzRequest(f *testing.F) {
	f.Add([]byte(`{"Op":"deliver","Creds":{"UID":1000,"GID":1000},"Job":{"Kind":"maildir","Path":"/home/u/Maildir/"}}` + "\n\x00\x00\x00\x05hello\x00\x00\x00\x00"))
	f.Add([]byte(`{"Op":"run","Creds":{"UID":1000},"Cmd":{"Argv":["/bin/sh","-c","x"],"Env":["A=b"],"TimeLimit":1000,"OutputLimit":10}}` + "\n\x00\x00\x00\x00"))
	f.Add([]byte(`{"Op":"read","Read":{"Path":"/home/u/.forward","Limit":4096,"Follow":true}}` + "\n"))
	f.Add([]byte(`{"Op":"run","Cmd":{"Argv":["x"]}}` + "\n\xff\xff\xff\xff"))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"Op":"deliver","Creds":{"UID":1000,"GID":1000},"Job":{"Kind":"maildir","Path":"/home/u/Maildir/"},"Probe":{"Paths":["/home/u/.forward+x","/home/u/.forward"],"Limit":4096}}` + "\n\x00\x00\x00\x00"))
	f.Add([]byte(`{"Op":"read","Read":{"Path":"/a","Limit":1},"Probe":{"Paths":["/a"],"Limit":1}}` + "\n"))
	f.Add([]byte(`{"Op":"commit","Creds":{"UID":1000,"GID":1000},"Commit":{"Dir":"/home/u/Maildir","Names":["1700000000.K4jX.0.mx"]}}` + "\n"))
	f.Add([]byte(`{"Op":"commit","Commit":{"Dir":"/home/u/Maildir/../../etc","Names":["../passwd"]}}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 64)
		req, err := readRequest(br)
		if err != nil {
			return
		}
		n := 0
		for _, p := range []bool{req.Job != nil, req.Cmd != nil, req.Read != nil, req.Commit != nil} {
			if p {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("accepted %+v", req)
		}
		switch {
		case req.Op == opDeliver && (req.Job == nil || req.Job.validate() != nil),
			req.Op == opRun && (req.Cmd == nil || len(req.Cmd.Argv) == 0 || req.Cmd.OutputLimit > maxOutputLimit),
			req.Op == opRead && (req.Read == nil || req.Read.Limit <= 0 || req.Read.Limit > MaxReadLimit || !strings.HasPrefix(req.Read.Path, "/")),
			req.Op == opCommit && (req.Commit == nil || !strings.HasPrefix(req.Commit.Dir, "/") || strings.Contains(req.Commit.Dir+"/", "/../") || len(req.Commit.Names) == 0 || slices.ContainsFunc(req.Commit.Names, func(n string) bool { return strings.ContainsAny(n, "/\x00") || n == ".." || n == "" })):
			t.Fatalf("accepted %+v", req)
		}
		if p := req.Probe; p != nil {
			// Files read first only for a delivery, each an
			// absolute path within the read bounds.
			if req.Op != opDeliver || len(p.Paths) == 0 || len(p.Paths) > maxProbePaths || p.Limit <= 0 || p.Limit > MaxReadLimit {
				t.Fatalf("accepted probe %+v", req)
			}
			for _, path := range p.Paths {
				if !strings.HasPrefix(path, "/") {
					t.Fatalf("accepted probe path %q", path)
				}
			}
		}
		ended := 0
		fr := &frameReader{r: br, ended: func() { ended++ }}
		got, err := io.ReadAll(fr)
		if len(got) > len(data) {
			t.Fatalf("read %d bytes from %d", len(got), len(data))
		}
		if (err == nil) != (ended == 1) {
			t.Fatalf("err %v, ended %d times", err, ended)
		}
	})
}
