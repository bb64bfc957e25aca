package queue

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"moat/internal/smtp"
)

func newQueue(t testing.TB, opts Options) *Queue {
	t.Helper()
	opts.Create = true
	q, err := Open(filepath.Join(t.TempDir(), "spool"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func testEnvelope() Envelope {
	return Envelope{
		Sender: "alice@example.org",
		Recipients: []Recipient{
			{Address: "bob@example.com", ORCPT: "rfc822;bob@example.com", Notify: smtp.NotifySuccess | smtp.NotifyFailure},
			{Address: "carol@example.net", Orig: "postmaster@example.net"},
			{Address: "dave@example.net", Notify: smtp.NotifyNever},
		},
		Filter: "smtp:[127.0.0.1]:10025",
		EnvID:  "QQ314159", Ret: "HDRS",
		ClientName: "mail.example.org", ClientAddr: "192.0.2.1", Helo: "mail.example.org",
		Protocol: "ESMTPSA", SASLUser: "alice", MessageID: "<1@example.org>",
		Flags: FlagSMTPUTF8,
	}
}

func commit(t testing.TB, q *Queue, env Envelope, content string) string {
	t.Helper()
	id, err := commitErr(q, env, content)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// commitErr is commit for goroutines other than the test's, which must not
// call t.Fatal.
func commitErr(q *Queue, env Envelope, content string) (string, error) {
	w, err := q.NewMessage()
	if err != nil {
		return "", err
	}
	defer w.Abort()
	w.Envelope = env
	w.Envelope.Arrival, _, _ = ParseID(w.ID())
	if _, err := io.Copy(w, strings.NewReader(content)); err != nil {
		return "", err
	}
	return w.Commit()
}

func TestOpenLayout(t *testing.T) {
	q := newQueue(t, Options{})
	for _, n := range Names() {
		st, err := os.Stat(filepath.Join(q.Dir(), n))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 || !st.IsDir() {
			t.Errorf("%s: mode %v", n, st.Mode())
		}
	}
	// Re-opening without Create validates.
	if _, err := Open(q.Dir(), Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestOpenReportsFixes(t *testing.T) {
	q := newQueue(t, Options{})
	deferred := filepath.Join(q.Dir(), Deferred)
	if err := os.Chmod(deferred, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Open(q.Dir(), Options{})
	if err == nil || !strings.Contains(err.Error(), "chmod 0700 "+deferred) {
		t.Errorf("mode: got %v, want the chmod fix", err)
	}
	os.Chmod(deferred, 0o700)

	_, err = Open(q.Dir(), Options{Owner: os.Geteuid() + 1, OwnerSet: true})
	if err == nil || !strings.Contains(err.Error(), "chown") || !strings.Contains(err.Error(), filepath.Join(q.Dir(), Incoming)) {
		t.Errorf("owner: got %v, want the chown fix naming incoming", err)
	}

	os.Remove(filepath.Join(q.Dir(), Maildrop))
	if _, err := Open(q.Dir(), Options{}); err == nil || !strings.Contains(err.Error(), Maildrop) {
		t.Errorf("missing: got %v", err)
	}
	if err := os.Chmod(q.Dir(), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(q.Dir(), Options{Create: true}); err == nil || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("world-writable top: got %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	q := newQueue(t, Options{})
	content := strings.Repeat("Subject: hi\r\n\r\nline of text\r\n", 100000) // ~3 MB
	env := testEnvelope()
	id := commit(t, q, env, content)
	m, err := q.Open(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got := m.Envelope
	if got.Size != int64(len(content)) {
		t.Errorf("size %d, want %d", got.Size, len(content))
	}
	idTime, _, _ := ParseID(id)
	if !got.Arrival.Equal(idTime) {
		t.Errorf("arrival %v, want %v", got.Arrival, idTime)
	}
	got.Size, got.Arrival = 0, time.Time{}
	if fmt.Sprint(got) != fmt.Sprint(env) {
		t.Errorf("envelope\n got %+v\nwant %+v", got, env)
	}
	var b bytes.Buffer
	if _, err := io.Copy(&b, m.Content()); err != nil {
		t.Fatal(err)
	}
	if b.String() != content {
		t.Error("content differs")
	}
	ids, _ := q.List(Incoming)
	if len(ids) != 1 || ids[0] != id {
		t.Errorf("List = %v", ids)
	}
	ents, _ := os.ReadDir(filepath.Join(q.Dir(), Incoming))
	if len(ents) != 1 {
		t.Errorf("incoming holds %d names, want 1 (temporary file left?)", len(ents))
	}
}

func TestNullSenderEmptyContent(t *testing.T) {
	q := newQueue(t, Options{})
	id := commit(t, q, Envelope{Recipients: []Recipient{{Address: "postmaster"}}}, "")
	in, err := q.Stat(Incoming, id)
	if err != nil {
		t.Fatal(err)
	}
	if in.Sender != "" || in.Size != 0 || len(in.Recipients) != 1 {
		t.Errorf("%+v", in)
	}
}

func TestCommitRejectsBadEnvelope(t *testing.T) {
	q := newQueue(t, Options{})
	for _, env := range []Envelope{
		{Sender: "a@b"},
		{Sender: "a@b\r\nRCPT TO:<x>", Recipients: []Recipient{{Address: "c@d"}}},
		{Recipients: []Recipient{{Address: "c@d"}}, Ret: "SOME"},
		{Recipients: []Recipient{{Address: ""}}},
		{Recipients: []Recipient{{Address: "c@d", Notify: smtp.NotifyNever | smtp.NotifyDelay}}},
		{Recipients: []Recipient{{Address: "c@d", Notify: 0x10}}},
	} {
		w, err := q.NewMessage()
		if err != nil {
			t.Fatal(err)
		}
		w.Envelope = env
		w.WriteString("x\r\n")
		if _, err := w.Commit(); err == nil {
			t.Errorf("%+v: commit succeeded", env)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(q.Dir(), Incoming))
	if len(ents) != 0 {
		t.Errorf("failed commits left %d files", len(ents))
	}
}

func TestAbort(t *testing.T) {
	q := newQueue(t, Options{})
	w, err := q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("partial")
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write after abort succeeded")
	}
	if _, err := w.Commit(); err == nil {
		t.Error("commit after abort succeeded")
	}
	ents, _ := os.ReadDir(filepath.Join(q.Dir(), Incoming))
	if len(ents) != 0 {
		t.Errorf("abort left %d files", len(ents))
	}
}

func TestHoldFlagCommitsToHold(t *testing.T) {
	q := newQueue(t, Options{})
	env := testEnvelope()
	env.Flags |= FlagHold
	id := commit(t, q, env, "x\r\n")
	in, err := q.Stat(Hold, id)
	if err != nil {
		t.Fatal(err)
	}
	if !in.Held || in.Active {
		t.Errorf("%+v", in)
	}
	if ids, _ := q.List(Incoming); len(ids) != 0 {
		t.Errorf("incoming: %v", ids)
	}
}

// TestCommittedSurvivesSnapshot copies the queue's directory tree the moment
// Commit returns, as a crash would freeze it, and opens the copy. What it
// proves: at that moment the final name exists and the file is complete and
// valid (no part of the work is still pending in another goroutine). It
// cannot prove that fsync reached the disk; that takes the power-cut test
// with the server.
func TestCommittedSurvivesSnapshot(t *testing.T) {
	q := newQueue(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			content := strings.Repeat(fmt.Sprintf("goroutine %d\r\n", g), 1000)
			w, err := q.NewMessage()
			if err != nil {
				errs <- err
				return
			}
			w.Envelope = testEnvelope()
			w.WriteString(content)
			id, err := w.Commit()
			if err != nil {
				errs <- err
				return
			}
			snap := t.TempDir()
			data, err := os.ReadFile(filepath.Join(q.Dir(), Incoming, id))
			if err != nil {
				errs <- fmt.Errorf("after commit: %w", err)
				return
			}
			p := filepath.Join(snap, id)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				errs <- err
				return
			}
			env, err := ReadFile(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				errs <- fmt.Errorf("snapshot of %s: %w", id, err)
				return
			}
			if env.Size != int64(len(content)) {
				errs <- fmt.Errorf("snapshot of %s: size %d", id, env.Size)
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestConcurrentCommitsUniqueSorted(t *testing.T) {
	q := newQueue(t, Options{})
	const n = 200
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id, err := commitErr(q, testEnvelope(), "x\r\n")
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("duplicate ID %s", id)
		}
		seen[id] = true
	}
	list, err := q.List(Incoming)
	if err != nil || len(list) != n {
		t.Fatalf("List: %d IDs, %v", len(list), err)
	}
	// A second Queue on the same directory (another process) never
	// repeats an ID either: the inode part differs.
	q2, err := Open(q.Dir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if id := commit(t, q2, testEnvelope(), "y"); seen[id] {
			t.Fatalf("second queue repeated %s", id)
		}
	}
}

func TestGroupSyncStickyError(t *testing.T) {
	s := &dirSync{path: filepath.Join(t.TempDir(), "missing")}
	if err := s.sync(); err == nil {
		t.Fatal("fsync of a missing directory succeeded")
	}
	os.Mkdir(s.path, 0o700)
	if err := s.sync(); err == nil {
		t.Fatal("error was not sticky: the queue must fail closed")
	}
}

func TestGroupSyncShares(t *testing.T) {
	s := &dirSync{path: t.TempDir()}
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.sync(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if s.started > 100 || s.started == 0 {
		t.Errorf("%d fsyncs for 100 callers", s.started)
	}
	t.Logf("%d fsyncs for 100 concurrent callers", s.started)
}

func TestSoloCommit(t *testing.T) {
	q := newQueue(t, Options{NoGroupCommit: true})
	id := commit(t, q, testEnvelope(), "solo\r\n")
	if _, err := q.Stat(Incoming, id); err != nil {
		t.Fatal(err)
	}
	if q.syncer[Incoming].started != 0 {
		t.Error("solo mode used the group syncer")
	}
}

// TestWriteErrorFailsClosed stands in for a full disk: once a write fails,
// later writes and Commit fail too, and nothing becomes visible.
func TestWriteErrorFailsClosed(t *testing.T) {
	q := newQueue(t, Options{})
	w, err := q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	w.Envelope = testEnvelope()
	w.f.Close() // every write from now on fails, as with ENOSPC
	big := strings.Repeat("x", 128<<10)
	if _, err := w.WriteString(big); err == nil {
		t.Fatal("write to a failing file succeeded")
	}
	if _, err := w.WriteString("more"); err == nil {
		t.Error("write error not sticky")
	}
	if _, err := w.Commit(); err == nil {
		t.Error("commit after a write error succeeded")
	}
	w.Abort()
	ents, _ := os.ReadDir(filepath.Join(q.Dir(), Incoming))
	if len(ents) != 0 {
		t.Errorf("incoming holds %d names", len(ents))
	}
	if ids, _ := q.List(Incoming); len(ids) != 0 {
		t.Errorf("visible: %v", ids)
	}
}

func TestCheckListsEveryProblem(t *testing.T) {
	q := newQueue(t, Options{})
	if errs := Check(q.Dir(), Options{}); len(errs) != 0 {
		t.Fatalf("clean queue: %v", errs)
	}
	os.Chmod(filepath.Join(q.Dir(), Active), 0o750)
	os.Remove(filepath.Join(q.Dir(), Hold))
	errs := Check(q.Dir(), Options{})
	if len(errs) != 2 {
		t.Fatalf("got %v, want 2 problems", errs)
	}
	if _, err := os.Stat(filepath.Join(q.Dir(), Hold)); err == nil {
		t.Error("Check created a directory")
	}
}

// TestReadsVersion1 proves that files written by the previous format
// version (no 'Q' or 'L' records) still open after an upgrade, and that a
// version 1 file cannot smuggle in a record its writer never knew.
func TestReadsVersion1(t *testing.T) {
	q := newQueue(t, Options{})
	env := testEnvelope()
	env.Filter = ""
	for i := range env.Recipients {
		env.Recipients[i].Orig = ""
	}
	id := commit(t, q, env, "Subject: old\r\n\r\nbody\r\n")
	path := filepath.Join(q.Dir(), Incoming, id)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copy(b, fileMagicV1)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := q.Open(Incoming, id)
	if err != nil {
		t.Fatalf("version 1 file: %v", err)
	}
	got := m.Envelope
	m.Close()
	if got.Sender != env.Sender || len(got.Recipients) != 3 {
		t.Errorf("version 1 envelope = %+v", got)
	}

	env = testEnvelope() // with Q and L records
	id = commit(t, q, env, "x\r\n")
	path = filepath.Join(q.Dir(), Incoming, id)
	if b, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	copy(b, fileMagicV1)
	if _, err := ReadFile(bytes.NewReader(b), int64(len(b))); err == nil || !strings.Contains(err.Error(), "version 1") {
		t.Errorf("version 1 file with a 'Q' record: err = %v", err)
	}
}
