package queue

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadFile feeds arbitrary bytes to the queue file reader: it must
// return an error or a consistent envelope, never panic or allocate without
// bound. Seeds are real files (with and without a state log) so that the
// fuzzer starts from valid structure.
func FuzzReadFile(f *testing.F) {
	q, err := Open(filepath.Join(f.TempDir(), "q"), Options{Create: true})
	if err != nil {
		f.Fatal(err)
	}
	for _, content := range []string{"", "Subject: x\r\n\r\nbody\r\n"} {
		id := commit(f, q, testEnvelope(), content)
		data, err := os.ReadFile(filepath.Join(q.Dir(), Incoming, id))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		if err := q.UpdateRecipients(Incoming, id, []RecipientUpdate{{Index: 1, State: RcptDeferred, Reason: "4.4.1 timeout"}}); err != nil {
			f.Fatal(err)
		}
		data, _ = os.ReadFile(filepath.Join(q.Dir(), Incoming, id))
		f.Add(data)
		f.Add(data[:len(data)-5])
	}
	f.Add([]byte(fileMagic))
	f.Add([]byte("MOATQF\x02\nD\x00\x00\x00\x00\x00\x00\x00\x00Z"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ReadFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if env != nil {
				t.Fatal("error with an envelope")
			}
			return
		}
		if env.Size < 0 || env.Size > int64(len(data)) || len(env.Recipients) == 0 {
			t.Fatalf("inconsistent envelope %+v", env)
		}
		for _, r := range env.Recipients {
			if r.Address == "" || r.State > RcptDeferred {
				t.Fatalf("bad recipient %+v", r)
			}
		}
	})
}
