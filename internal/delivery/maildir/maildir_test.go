package maildir

import (
	"bytes"
	"errors"
	"io"
	"moat/internal/delivery"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// deliverOne delivers content and returns the file's bytes.
func deliverOne(t *testing.T, content string, opts Options) (string, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "Maildir")
	path, err := Deliver(dir, strings.NewReader(content), opts)
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

func TestRoundTrip(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"crlf", "Subject: x\r\n\r\nbody\r\n", "Subject: x\n\nbody\n"},
		// The queue holds un-dot-stuffed content: dot lines pass through.
		{"dot lines", "a\r\n.\r\n..b\r\n.c\r\n", "a\n.\n..b\n.c\n"},
		{"binary", "x\x00\xff\x80\r\n\ty\r\n", "x\x00\xff\x80\n\ty\n"},
		{"lone cr", "a\rb\r\r\nc\r\n", "a\rb\r\nc\n"},
		{"no final newline", "a\r\nlast", "a\nlast\n"},
		{"final cr", "a\r\nlast\r", "a\nlast\r\n"},
		{"bare lf kept", "a\nb\r\n", "a\nb\n"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, got := deliverOne(t, tt.in, Options{Hostname: "h"})
			if string(got) != tt.want {
				t.Errorf("content = %q, want %q", got, tt.want)
			}
			if !strings.HasSuffix(path, ",S="+strconv.Itoa(len(tt.want))) {
				t.Errorf("name %s lacks ,S=%d", filepath.Base(path), len(tt.want))
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"all", Options{ReturnPath: true, Sender: "a@x.example", OrigRecipient: "Bob@Y.example", Recipient: "bob@y.example"},
			"Return-Path: <a@x.example>\nX-Original-To: Bob@Y.example\nDelivered-To: bob@y.example\n"},
		{"null sender", Options{ReturnPath: true, Recipient: "b@y"}, "Return-Path: <>\nDelivered-To: b@y\n"},
		{"quoted local", Options{ReturnPath: true, Sender: `a b"c@x`}, "Return-Path: <\"a b\\\"c\"@x>\n"},
		{"dots", Options{ReturnPath: true, Sender: "a..b@x"}, "Return-Path: <\"a..b\"@x>\n"},
		{"no at", Options{Recipient: "MAILER-DAEMON"}, "Delivered-To: MAILER-DAEMON\n"},
		{"utf8", Options{Recipient: "jösé@x"}, "Delivered-To: jösé@x\n"},
		{"injection", Options{Recipient: "a@x\r\nBcc: evil"}, "Delivered-To: a@x??Bcc: evil\n"},
		{"none", Options{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := deliverOne(t, "S: x\r\n\r\nb\r\n", tt.opts)
			if want := tt.want + "S: x\n\nb\n"; string(got) != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestNameAndModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "Maildir")
	path, err := Deliver(dir, strings.NewReader("x\r\n"), Options{Hostname: "mx/1:2"})
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\d+\.M\d{1,6}P` + strconv.Itoa(os.Getpid()) + `Q\d+\.mx\\0571\\0722,S=2$`)
	if !re.MatchString(filepath.Base(path)) {
		t.Errorf("name %q does not match %s", filepath.Base(path), re)
	}
	if filepath.Dir(path) != filepath.Join(dir, "new") {
		t.Errorf("delivered to %s, want new/", path)
	}
	for _, sub := range []string{"", "tmp", "new", "cur"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 || !fi.IsDir() {
			t.Errorf("%s: mode %v, want drwx------", sub, fi.Mode())
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode())
	}
	assertEmpty(t, filepath.Join(dir, "tmp"))
}

func TestConcurrentUnique(t *testing.T) {
	dir := t.TempDir()
	const n = 100
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			paths[i], errs[i] = Deliver(dir, strings.NewReader("m "+strconv.Itoa(i)+"\r\n"), Options{Hostname: "h"})
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		if seen[paths[i]] {
			t.Fatalf("duplicate name %s", paths[i])
		}
		seen[paths[i]] = true
		data, err := os.ReadFile(paths[i])
		if err != nil || string(data) != "m "+strconv.Itoa(i)+"\n" {
			t.Errorf("delivery %d: %q, %v", i, data, err)
		}
	}
	if c, err := Count(dir); err != nil || c != n {
		t.Errorf("Count = %d, %v; want %d", c, err, n)
	}
	assertEmpty(t, filepath.Join(dir, "tmp"))
}

func TestNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	if _, err := Deliver(dir, strings.NewReader(""), Options{}); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp", "x")
	if err := os.WriteFile(tmp, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	taken := filepath.Join(dir, "new", "1.M1P1Q1.h,S=4")
	if err := os.WriteFile(taken, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := linkNew(tmp, filepath.Join(dir, "new"), "1.M1P1Q1.h", 4, 1, 1, "h")
	if err != nil {
		t.Fatal(err)
	}
	if got == taken {
		t.Fatal("linked over an existing message")
	}
	if data, _ := os.ReadFile(taken); string(data) != "old\n" {
		t.Errorf("existing message changed to %q", data)
	}
	if data, _ := os.ReadFile(got); string(data) != "new\n" {
		t.Errorf("new message %s = %q", got, data)
	}
}

func TestSizeLimit(t *testing.T) {
	opts := Options{ReturnPath: true, Sender: "s@x", SizeLimit: int64(len("Return-Path: <s@x>\nab\n"))}
	// Exactly at the limit is allowed, as with RLIMIT_FSIZE.
	if _, got := deliverOne(t, "ab\r\n", opts); string(got) != "Return-Path: <s@x>\nab\n" {
		t.Errorf("at limit: %q", got)
	}
	dir := t.TempDir()
	_, err := Deliver(dir, strings.NewReader("abc\r\n"), opts)
	wantError(t, err, "5.2.2", "bounced", "maildir delivery failed: error writing message: File too large")
	if !errors.Is(err, syscall.EFBIG) {
		t.Errorf("err %v is not EFBIG", err)
	}
	assertNothing(t, dir)
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n > 0 {
		f.n--
		return copy(p, "line\r\n"), nil
	}
	return 0, syscall.EIO
}

func TestFailingReaderCleansUp(t *testing.T) {
	dir := t.TempDir()
	if _, err := Deliver(dir, strings.NewReader("first\r\n"), Options{}); err != nil {
		t.Fatal(err)
	}
	_, err := Deliver(dir, &failingReader{n: 3}, Options{})
	wantError(t, err, "4.3.0", "deferred", "maildir delivery failed: error reading message: Input/output error")
	assertEmpty(t, filepath.Join(dir, "tmp"))
	if c, _ := Count(dir); c != 1 {
		t.Errorf("Count = %d after failed delivery, want 1", c)
	}
}

func TestNotADirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// As Postfix's local(8) (maildir.c): the open of the tmp/ file fails
	// with something other than ENOENT, and the text names that file.
	_, err := Deliver(dir, strings.NewReader("x\r\n"), Options{Key: "ID.0", Arrival: time.Unix(1700000000, 0), Hostname: "h"})
	wantError(t, err, "4.2.0", "deferred", "maildir delivery failed: create maildir file "+filepath.Join(dir, "tmp", "1700000000.KID.0.h")+": Not a directory")
}

func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root bypasses directory permissions")
	}
	dir := t.TempDir()
	if _, err := Deliver(dir, strings.NewReader(""), Options{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o500); err != nil {
		t.Fatal(err)
	}
	_, err := Deliver(dir, strings.NewReader("x\r\n"), Options{})
	var e *delivery.Error
	if !errors.As(err, &e) || e.DSN != "4.2.0" || !strings.HasSuffix(e.Text, ": Permission denied") {
		t.Errorf("err = %v, want 4.2.0 Permission denied", err)
	}
}

func TestErrnoDSN(t *testing.T) {
	for _, tt := range []struct {
		errno syscall.Errno
		want  string
	}{
		{syscall.EAGAIN, "4.2.0"}, {syscall.ESTALE, "4.2.0"}, {syscall.ENOSPC, "4.3.0"},
		{syscall.EIO, "4.3.0"}, {syscall.EDQUOT, "5.2.2"}, {syscall.EFBIG, "5.2.2"},
		{syscall.EACCES, "def"}, {syscall.EROFS, "def"},
	} {
		if got := delivery.ErrnoDSN(&os.PathError{Op: "write", Path: "f", Err: tt.errno}, "def"); got != tt.want {
			t.Errorf("%v: %s, want %s", tt.errno, got, tt.want)
		}
	}
	if got := delivery.Strerror(syscall.EDQUOT); got != "Disk quota exceeded" {
		t.Errorf("strerror(EDQUOT) = %q", got)
	}
}

func TestCount(t *testing.T) {
	dir := t.TempDir()
	if _, err := Count(dir); err == nil {
		t.Error("Count of a non-Maildir succeeded")
	}
	for range 3 {
		if _, err := Deliver(dir, strings.NewReader("x\r\n"), Options{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"cur/1.M1P1.h:2,S", "cur/.hidden", "tmp/2.M1P1.h"} {
		if err := os.WriteFile(filepath.Join(dir, p), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "cur", "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if c, err := Count(dir); err != nil || c != 4 {
		t.Errorf("Count = %d, %v; want 4", c, err)
	}
}

// lineSource yields n CRLF lines of 78 bytes without holding them.
type lineSource struct {
	left int
	line []byte
	off  int
}

func (s *lineSource) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if s.off == len(s.line) {
			if s.left == 0 {
				break
			}
			s.left--
			s.off = 0
		}
		c := copy(p[n:], s.line[s.off:])
		s.off += c
		n += c
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func TestLargeMessageBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB write in -short mode")
	}
	line := []byte(strings.Repeat("x", 76) + "\r\n")
	lines := 50 << 20 / len(line)
	src := &lineSource{left: lines, line: line, off: len(line)}
	dir := t.TempDir()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	path, err := Deliver(dir, src, Options{ReturnPath: true, Sender: "s@x"})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	// Buffers are a few 64 KiB slices; holding the message would be 50 MB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("allocated %d bytes for a 50 MB message", alloc)
	}
	want := int64(len("Return-Path: <s@x>\n") + lines*(len(line)-1))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != want || !strings.HasSuffix(path, ",S="+strconv.FormatInt(want, 10)) {
		t.Errorf("size %d (%s), want %d", fi.Size(), filepath.Base(path), want)
	}
}

func wantError(t *testing.T, err error, dsn, status, text string) {
	t.Helper()
	var e *delivery.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *delivery.Error", err, err)
	}
	if e.DSN != dsn || e.Status() != status || e.Text != text {
		t.Errorf("got %s %s (%s), want %s %s (%s)", e.DSN, e.Status(), e.Text, dsn, status, text)
	}
	if e.Temporary() != (dsn[0] == '4') {
		t.Errorf("Temporary() = %v for %s", e.Temporary(), dsn)
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%s not empty: %v", dir, entries)
	}
}

// assertNothing checks that a failed delivery left no trace.
func assertNothing(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"tmp", "new", "cur"} {
		assertEmpty(t, filepath.Join(dir, sub))
	}
}

func TestConvertSplitCR(t *testing.T) {
	var out bytes.Buffer
	lw := &lfWriter{w: &out}
	for _, p := range []string{"a\r", "\nb\r", "c\r", "\r", "\n", "\r"} {
		if _, err := lw.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := lw.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "a\nb\rc\r\n\r"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

// TestKeyedIdempotent: a retried delivery with the same key (the queue
// manager's retry after a crash before it recorded success) leaves one
// message, and a half-written tmp file of the crashed attempt is replaced.
func TestKeyedIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	opts := Options{Key: "4dXq8K0Bblz6Vd3.0", Arrival: time.Unix(1700000000, 0), Hostname: "mx"}
	msg := "Subject: once\r\n\r\nbody\r\n"
	// A crashed attempt's leftovers in tmp/.
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tmp", "1700000000.K4dXq8K0Bblz6Vd3.0.mx"), []byte("Subj"), 0o600); err != nil {
		t.Fatal(err)
	}
	p1, err := Deliver(dir, strings.NewReader(msg), opts)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Deliver(dir, strings.NewReader(msg), opts)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Errorf("second delivery made %s, first %s", p2, p1)
	}
	if n, _ := Count(dir); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
	if b, _ := os.ReadFile(p1); string(b) != "Subject: once\n\nbody\n" {
		t.Errorf("content %q", b)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %d files", len(left))
	}
	opts.Key = "bad/key"
	if _, err := Deliver(dir, strings.NewReader(msg), opts); err == nil {
		t.Error("unsafe key accepted")
	}
}

// TestHalfMadeMaildir: the directories are not checked before each
// delivery, so a Maildir with tmp/ but no new/ or cur/ (an admin's
// half-made one) must still be completed when the link finds new/
// missing, for unique and keyed names alike.
func TestHalfMadeMaildir(t *testing.T) {
	for _, opts := range []Options{{}, {Key: "ID.1", Arrival: time.Unix(1700000000, 0)}} {
		dir := filepath.Join(t.TempDir(), "Maildir")
		if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
			t.Fatal(err)
		}
		p, err := Deliver(dir, strings.NewReader("x\r\n"), opts)
		if err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		if filepath.Dir(p) != filepath.Join(dir, "new") {
			t.Errorf("delivered to %s", p)
		}
		for _, d := range []string{"tmp", "new", "cur"} {
			if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
				t.Errorf("%s: %v", d, err)
			}
		}
		assertEmpty(t, filepath.Join(dir, "tmp"))
	}
}

// TestSyncOfNew: new/ is fsynced after the link (through SyncNew when
// set), also when a keyed retry finds the earlier attempt's file, since
// that attempt may have ended before its fsync.
func TestSyncOfNew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	var synced []string
	opts := Options{Key: "k1", Arrival: time.Unix(1700000000, 0), Hostname: "mx",
		SyncNew: func(d string) error { synced = append(synced, d); return nil }}
	msg := "Subject: s\r\n\r\nbody\r\n"
	for range 2 {
		if _, err := Deliver(dir, strings.NewReader(msg), opts); err != nil {
			t.Fatal(err)
		}
	}
	if want := filepath.Join(dir, "new"); len(synced) != 2 || synced[0] != want || synced[1] != want {
		t.Errorf("new/ fsyncs %q, want two of %s (the delivery and the retry that found it)", synced, want)
	}
}

// TestStageAndCommit: a staged delivery is in tmp/ only, under the name
// Deliver returns for new/; Commit links every staged name into new/
// with one fsync of new/, takes names new/ already has (a retry), and
// defers (4.3.0) when a staged file is gone, after linking the others.
// A stage needs a key.
func TestStageAndCommit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	msg := "Subject: s\r\n\r\nbody\r\n"
	opts := Options{Arrival: time.Unix(1700000000, 0), Hostname: "mx", Stage: true}
	var names []string
	for _, k := range []string{"a.0", "b.0", "c.0"} {
		opts.Key = k
		p, err := Deliver(dir, strings.NewReader(msg), opts)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(p) != filepath.Join(dir, "new") {
			t.Fatalf("staged delivery names %s, not a new/ file", p)
		}
		if _, err := os.Stat(filepath.Join(dir, "tmp", filepath.Base(p))); err != nil {
			t.Fatalf("staged file not in tmp/: %v", err)
		}
		names = append(names, filepath.Base(p))
	}
	if n, _ := Count(dir); n != 0 {
		t.Fatalf("%d messages visible before the commit", n)
	}
	var synced int
	sync := Options{SyncNew: func(string) error { synced++; return nil }}
	if err := Commit(dir, names[:2], sync); err != nil {
		t.Fatal(err)
	}
	// A retry of the first finds it in new/ and stages nothing.
	opts.Key = "a.0"
	if _, err := Deliver(dir, strings.NewReader(msg), opts); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "tmp", names[2])); err != nil {
		t.Fatal(err)
	}
	err := Commit(dir, names, sync)
	var de *delivery.Error
	if !errors.As(err, &de) || de.DSN != "4.3.0" || !strings.Contains(de.Text, names[2]) {
		t.Errorf("commit with a staged file gone: %v", err)
	}
	if n, _ := Count(dir); n != 2 || synced != 2 {
		t.Errorf("%d messages after the commits, %d fsyncs of new/; want 2 and 2", n, synced)
	}
	b, err := os.ReadFile(filepath.Join(dir, "new", names[0]))
	if err != nil || string(b) != "Subject: s\n\nbody\n" {
		t.Errorf("committed file: %q, %v", b, err)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %d files after the commits", len(left))
	}
	for _, bad := range [][]string{nil, {"../x"}, {""}} {
		if err := Commit(dir, bad, Options{}); err == nil {
			t.Errorf("Commit(%q) accepted", bad)
		}
	}
	opts.Key = ""
	if _, err := Deliver(dir, strings.NewReader(msg), opts); err == nil {
		t.Error("a stage without a key accepted")
	}
}
