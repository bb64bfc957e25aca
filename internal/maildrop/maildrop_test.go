package maildrop

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func build(t testing.TB, env *Envelope, content string) []byte {
	var b bytes.Buffer
	w, err := NewWriter(&b, env, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, content); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	env := &Envelope{Sender: "user", FullName: "Jöe User", EnvID: "x1", Ret: "HDRS", Notify: "delay,failure", Body: "8BITMIME", Recipients: []string{"a@b", "c"}}
	content := "Subject: hi\r\n\r\nbody\r\n"
	data := build(t, env, content)
	f, err := Read(bytes.NewReader(data), int64(len(data)), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if f.Sender != "user" || f.SenderGiven || f.FullName != "Jöe User" || f.Ret != "HDRS" || f.Body != "8BITMIME" || len(f.Recipients) != 2 || f.Recipients[1] != "c" {
		t.Fatalf("envelope %+v", f.Envelope)
	}
	got, _ := io.ReadAll(f.Content(bytes.NewReader(data)))
	if string(got) != content {
		t.Fatalf("content %q", got)
	}
}

// TestVerifyVersion: only sendmail -bv files are version 2, so that a
// moat knowing only version 1 still reads ordinary mail, and a verify line
// in a version 1 file is refused (an old writer never wrote one).
func TestVerifyVersion(t *testing.T) {
	plain := build(t, &Envelope{Sender: "u", Recipients: []string{"a@b"}}, "")
	if !bytes.HasPrefix(plain, []byte(Magic+"\n")) {
		t.Fatalf("ordinary file starts %q", plain[:12])
	}
	data := build(t, &Envelope{Sender: "u", Verify: true, Recipients: []string{"a@b", "c"}}, "")
	if !bytes.HasPrefix(data, []byte(Magic2+"\n")) {
		t.Fatalf("verify file starts %q", data[:12])
	}
	f, err := Read(bytes.NewReader(data), int64(len(data)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Verify || len(f.Recipients) != 2 || f.ContentLen != 0 {
		t.Fatalf("envelope %+v", f)
	}
	for _, env := range []string{
		Magic + "\nsender a\nsender-given no\nverify yes\nrcpt b\n\n",
		Magic2 + "\nsender a\nsender-given no\nverify no\nrcpt b\n\n",
		Magic2 + "\nsender a\nsender-given no\nverify yes\nverify yes\nrcpt b\n\n",
		"MOATDROP 3\nsender a\nsender-given no\nrcpt b\n\n",
	} {
		d := forge(env, "")
		if _, err := Read(bytes.NewReader(d), int64(len(d)), 0); !errors.Is(err, ErrFormat) {
			t.Errorf("%q: err %v, want ErrFormat", env, err)
		}
	}
}

func TestRefused(t *testing.T) {
	env := &Envelope{Sender: "", SenderGiven: true, Recipients: []string{"a@b"}}
	data := build(t, env, "x\r\n")
	cases := map[string][]byte{
		"truncated": data[:len(data)-1],
		"flipped":   append(append([]byte{}, data[:12]...), append([]byte{'X'}, data[13:]...)...),
		"empty":     nil,
	}
	for name, d := range cases {
		if _, err := Read(bytes.NewReader(d), int64(len(d)), 0); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v, want ErrFormat", name, err)
		}
	}
	if _, err := Read(bytes.NewReader(data), int64(len(data)), 2); !errors.Is(err, ErrFormat) {
		t.Errorf("over the size limit: %v", err)
	}
	if _, err := NewWriter(io.Discard, &Envelope{Recipients: []string{"a\nrcpt b"}}, 0); err == nil {
		t.Error("a recipient with a newline was written")
	}
	if _, err := NewWriter(io.Discard, &Envelope{}, 0); err == nil {
		t.Error("no recipients was written")
	}
	w, _ := NewWriter(io.Discard, env, 4)
	if _, err := w.Write([]byte("12345")); !errors.Is(err, ErrTooBig) {
		t.Errorf("limit: %v", err)
	}
}

// TestForgedEnvelope: a well-formed checksum does not make bad envelope
// lines acceptable (the writer is the untrusted user, who can compute
// checksums too).
func TestForgedEnvelope(t *testing.T) {
	for _, env := range []string{
		Magic + "\nsender a\nsender-given no\n\n",                       // no rcpt
		Magic + "\nsender a\nsender a\nsender-given no\nrcpt b\n\n",     // twice
		Magic + "\nsender a\nsender-given maybe\nrcpt b\n\n",            // bad bool
		Magic + "\nsender a\nsender-given no\nuid 0\nrcpt b\n\n",        // unknown
		"MOATDROP 2\nsender a\nsender-given no\nrcpt b\n\n",             // version 2 without verify
		"MOATDROP 3\nsender a\nsender-given no\nverify yes\nrcpt b\n\n", // version
		Magic + "\nsender a\x01\nsender-given no\nrcpt b\n\n",           // control
		Magic + "\nsender-given no\nrcpt b\n\n",                         // no sender
		Magic + "\nsender a\nsender-given no\nrcpt b\nret NONE\n\n",     // bad ret
		Magic + "\nsender a\nsender-given no\nrcpt b\n" + strings.Repeat("x", MaxLine) + "\n\n",
	} {
		d := forge(env, "")
		if _, err := Read(bytes.NewReader(d), int64(len(d)), 0); !errors.Is(err, ErrFormat) {
			t.Errorf("%q: err %v", env, err)
		}
	}
	ok := forge(Magic+"\nsender a\nsender-given no\nrcpt b\n\n", "hi\r\n")
	if _, err := Read(bytes.NewReader(ok), int64(len(ok)), 0); err != nil {
		t.Errorf("forged but valid: %v", err)
	}
}

// forge builds a file by hand with a correct trailer.
func forge(env, content string) []byte {
	var b bytes.Buffer
	b.WriteString(env)
	b.WriteString(content)
	return append(b.Bytes(), trailerFor(b.Bytes(), int64(len(content)))...)
}

func TestCreateCommit(t *testing.T) {
	dir := t.TempDir()
	p, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || !IsTemp(ents[0].Name()) {
		t.Fatalf("entries %v", ents)
	}
	w, _ := NewWriter(p, &Envelope{Sender: "u", Recipients: []string{"r"}}, 0)
	io.WriteString(w, "x\r\n")
	w.Close()
	name, err := p.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !IsFinal(name) {
		t.Fatalf("name %q", name)
	}
	st, err := os.Stat(filepath.Join(dir, name))
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("stat %v %v", st, err)
	}
	p2, _ := Create(dir)
	p2.Abort()
	ents, _ = os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("abort left %v", ents)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(forge(Magic+"\nsender a\nsender-given no\nrcpt b\n\n", "hi\r\n"))
	f.Add(forge(Magic+"\nsender \nsender-given yes\nfull-name X\nenvid e\nret FULL\nnotify never\nbody 7BIT\nrcpt b\nrcpt c\n\n", ""))
	f.Add([]byte(Magic + "\n"))
	f.Add(forge(Magic2+"\nsender a\nsender-given no\nverify yes\nrcpt b\nrcpt c\n\n", ""))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Half the inputs get a valid trailer, so the parser behind the
		// checksum is reached.
		if len(data) > 0 && data[0]&1 == 1 {
			data = append(append([]byte{}, data...), trailerFor(data, int64(len(data)/3))...)
		}
		file, err := Read(bytes.NewReader(data), int64(len(data)), 1<<20)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("non-format error %v", err)
			}
			return
		}
		// What the reader accepts, the writer can write again.
		if err := file.Validate(); err != nil {
			t.Fatalf("accepted an invalid envelope: %v", err)
		}
		if file.ContentOffset+file.ContentLen+TrailerLen != int64(len(data)) {
			t.Fatal("content out of bounds")
		}
	})
}

// trailerFor computes the trailer of the bytes before it, for tests that
// forge files as a hostile user would.
func trailerFor(before []byte, contentLen int64) string {
	s := sha256.Sum256(before)
	return trailer(contentLen, s[:])
}
