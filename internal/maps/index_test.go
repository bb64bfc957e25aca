package maps

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"moat/internal/testutil"
)

// buildIndex parses source text like postmap does (fold, first duplicate
// wins) and writes NAME.db; it returns NAME.
func buildIndex(t *testing.T, dir, src string) string {
	t.Helper()
	name := filepath.Join(dir, "table")
	testutil.WriteOld(t, name, []byte(src))
	recs, _ := ParseSource(name, []byte(src), true)
	if err := WriteIndex(IndexPath("hash", name), dedupFirst(recs)); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestIndexRoundTrip(t *testing.T) {
	var recs []Record
	for i := range 1000 {
		recs = append(recs, Record{Key: fmt.Sprintf("key%d@example.com", i), Value: fmt.Sprintf("value %d", i)})
	}
	recs = append(recs, Record{Key: "", Value: "empty key"}, Record{Key: "nul\x00key", Value: ""})
	path := filepath.Join(t.TempDir(), "x.db")
	if err := WriteIndex(path, recs); err != nil {
		t.Fatal(err)
	}
	got, err := ReadIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, recs) {
		t.Fatalf("ReadIndex returned %d records, not the %d written in order", len(got), len(recs))
	}
	for _, typ := range []string{"hash", "btree", "lmdb", "cdb"} {
		tbl, err := Open(typ+":"+strings.TrimSuffix(path, ".db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			v, ok, err := tbl.Lookup(r.Key)
			if err != nil || !ok || v != r.Value {
				t.Fatalf("%s: Lookup(%q) = %q, %v, %v; want %q", typ, r.Key, v, ok, err, r.Value)
			}
		}
		if _, ok, err := tbl.Lookup("absent"); ok || err != nil {
			t.Errorf("%s: absent key found=%v err=%v", typ, ok, err)
		}
		if tbl.Pattern() {
			t.Errorf("%s: an index is not a pattern table", typ)
		}
		tbl.Close()
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("index mode = %v, %v; want 0644", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".x.db.tmp*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestIndexEmptyAndDuplicate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "e.db")
	if err := WriteIndex(path, nil); err != nil {
		t.Fatal(err)
	}
	tbl, err := Open("hash:"+filepath.Join(dir, "e"), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := tbl.Lookup("x"); ok || err != nil {
		t.Errorf("empty index: found=%v err=%v", ok, err)
	}
	err = WriteIndex(filepath.Join(dir, "d.db"), []Record{{"a", "1", 1}, {"a", "2", 2}})
	if err == nil || !strings.Contains(err.Error(), `duplicate key "a" (line 2)`) {
		t.Errorf("duplicate keys: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "d.db")); !os.IsNotExist(err) {
		t.Errorf("failed WriteIndex left a file: %v", err)
	}
}

func TestIndexFolding(t *testing.T) {
	name := buildIndex(t, t.TempDir(), "Spam@Spam.COM REJECT\n")
	tbl, err := Open("hash:"+name, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	if v, ok, _ := tbl.Lookup("SPAM@spam.com"); !ok || v != "REJECT" {
		t.Errorf("folded lookup = %q, %v", v, ok)
	}
}

// TestIndexNotMoat opens a Berkeley DB file made by Debian's postmap and
// other foreign bytes: a clear error, never a panic.
func TestIndexNotMoat(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "bdb")
	want := fmt.Sprintf("%s.db is not a moat index; rebuild it with `moat postmap hash:%s`", name, name)
	check := func(what string) {
		t.Helper()
		_, err := Open("hash:"+name, DefaultOptions())
		if err == nil || err.Error() != want {
			t.Errorf("%s: err = %v\nwant %s", what, err, want)
		}
	}
	for _, junk := range []string{"", "x", strings.Repeat("\x00", 4096)} {
		if err := os.WriteFile(name+".db", []byte(junk), 0o644); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("%d junk bytes", len(junk)))
	}
	postmap := testutil.PostfixTool(t, "postmap")
	os.Remove(name + ".db")
	testutil.WriteOld(t, name, []byte("a b\n"))
	cmd := exec.Command(postmap, "hash:"+name)
	cmd.Env = postfixEnv(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postmap: %v %s", err, out)
	}
	check("Berkeley DB file")
	if _, err := ReadIndex(name + ".db"); err == nil || !strings.Contains(err.Error(), "not a moat index") {
		t.Errorf("ReadIndex of a Berkeley DB file: %v", err)
	}
}

func TestIndexCorruptHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	if err := WriteIndex(path, []Record{{"a", "1", 0}}); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	for name, mutate := range map[string]func([]byte) []byte{
		"version":   func(b []byte) []byte { b[8] = 9; return b },
		"slots":     func(b []byte) []byte { b[12] = 3; return b },
		"truncated": func(b []byte) []byte { return b[:len(b)-1] },
		"table off": func(b []byte) []byte { b[24] = 0xff; return b },
		"record":    func(b []byte) []byte { b[32] = 0xff; return b },
	} {
		b := mutate(slices.Clone(good))
		d, err := parseIndex(b)
		if err == nil {
			_, _, err = d.lookup("a")
		}
		if err == nil {
			_, err = d.records()
		}
		if err == nil {
			t.Errorf("%s: corruption not detected", name)
		}
	}
}

// TestIndexReopen rebuilds the index under an open table: the next lookup
// after the check interval sees the new file; a foreign file put in its
// place makes lookups fail (defer, not guess) until a good one returns.
func TestIndexReopen(t *testing.T) {
	dir := t.TempDir()
	name := buildIndex(t, dir, "a old\n")
	tbl, err := Open("hash:"+name, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	it := tbl.(*indexedTable)
	it.setRecheck(0)
	if v, _, _ := tbl.Lookup("a"); v != "old" {
		t.Fatalf("before rebuild: %q", v)
	}
	buildIndex(t, dir, "a new\nb added\n")
	if v, _, err := tbl.Lookup("a"); v != "new" || err != nil {
		t.Errorf("after rebuild: %q, %v", v, err)
	}
	if v, _, _ := tbl.Lookup("b"); v != "added" {
		t.Errorf("after rebuild, new key: %q", v)
	}
	if err := os.WriteFile(name+".tmp", []byte("not an index"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Rename(name+".tmp", name+".db")
	if _, _, err := tbl.Lookup("a"); err == nil || !strings.Contains(err.Error(), "not a moat index") {
		t.Errorf("foreign file: err = %v", err)
	}
	buildIndex(t, dir, "a again\n")
	if v, _, err := tbl.Lookup("a"); v != "again" || err != nil {
		t.Errorf("after repair: %q, %v", v, err)
	}
	// With the default interval, a rebuild is not noticed at once.
	it.setRecheck(time.Hour)
	buildIndex(t, dir, "a later\n")
	if v, _, _ := tbl.Lookup("a"); v != "again" {
		t.Errorf("within the interval: %q, want the open file's answer", v)
	}
}

// TestIndexTruncatedInPlace truncates the mapped file the way a tool that
// rewrites in place would: the lookup reports an error instead of dying
// of SIGBUS.
func TestIndexTruncatedInPlace(t *testing.T) {
	dir := t.TempDir()
	var src strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&src, "k%d %s\n", i, strings.Repeat("v", 50))
	}
	name := buildIndex(t, dir, src.String())
	tbl, err := Open("hash:"+name, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	tbl.(*indexedTable).setRecheck(time.Hour)
	if err := os.Truncate(name+".db", 0); err != nil {
		t.Fatal(err)
	}
	_, _, err = tbl.Lookup("k1999")
	if err == nil || !strings.Contains(err.Error(), "file changed during lookup") {
		t.Errorf("lookup in truncated mapping: err = %v", err)
	}
}

func TestIndexStaleWarning(t *testing.T) {
	dir := t.TempDir()
	name := buildIndex(t, dir, "a 1\n")
	var warns []string
	opts := Options{Fold: true, Warn: func(m string) { warns = append(warns, m) }}
	open := func() {
		tbl, err := Open("hash:"+name, opts)
		if err != nil {
			t.Fatal(err)
		}
		tbl.Close()
	}
	old, older := time.Now().Add(-2*time.Hour), time.Now().Add(-3*time.Hour)
	os.Chtimes(name+".db", old, old)
	os.Chtimes(name, older, older)
	open()
	if len(warns) != 0 {
		t.Errorf("source older than index: %q", warns)
	}
	src := time.Now().Add(-time.Hour)
	os.Chtimes(name, src, src)
	open()
	want := fmt.Sprintf("database %s.db is older than source file %s", name, name)
	if !slices.Equal(warns, []string{want}) {
		t.Errorf("warnings %q, want %q", warns, want)
	}
	// A source edited in the last 100 seconds is probably being rebuilt.
	warns = nil
	os.Chtimes(name, time.Now(), time.Now())
	open()
	if len(warns) != 0 {
		t.Errorf("fresh source: %q", warns)
	}
}

func TestIndexMissing(t *testing.T) {
	_, err := Open("hash:"+filepath.Join(t.TempDir(), "none"), DefaultOptions())
	if err == nil || !strings.Contains(err.Error(), "open database") || !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing index: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// TestIndexDifferential builds the same sources with Debian's postmap
// (Berkeley DB, in its own directory) and with moat, then compares
// `postmap -q` with moat's Lookup for every key, case variants and misses.
func TestIndexDifferential(t *testing.T) {
	postmap := testutil.PostfixTool(t, "postmap")
	env := postfixEnv(t)
	sources := []string{
		string(mustRead(t, filepath.Join(testutil.PostfixTests(t), "smtpd", "smtpd_check_access"))),
		"192.168.0.100 REJECT\n192.168.10 REJECT\nspam@spam.com REJECT\nspam.org REJECT\na.b.c.d OK\n",
		"Key1   Value One  \n  continued here\nkey1 dup\n\"Quoted Key\" v\nK\u00c4Y v6\n",
	}
	for i, src := range sources {
		pfDir, moatDir := t.TempDir(), t.TempDir()
		pfName := filepath.Join(pfDir, "table")
		testutil.WriteOld(t, pfName, []byte(src))
		cmd := exec.Command(postmap, "hash:"+pfName)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("postmap: %v %s", err, out)
		}
		name := buildIndex(t, moatDir, src)
		tbl, err := Open("hash:"+name, DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		recs, _ := ParseSource(name, []byte(src), false)
		var queries []string
		for _, r := range recs {
			queries = append(queries, r.Key, strings.ToUpper(r.Key), r.Key+"x")
		}
		// `postmap -q -` reads one key a line and prints "key\tvalue" for
		// each key found: one process for all queries.
		cmd = exec.Command(postmap, "-q", "-", "hash:"+pfName)
		cmd.Env = env
		cmd.Stdin = strings.NewReader(strings.Join(queries, "\n") + "\n")
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
			t.Fatalf("postmap -q -: %v", err)
		}
		want := map[string]string{}
		for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
			if k, v, ok := strings.Cut(line, "\t"); ok {
				want[k] = v
			}
		}
		for _, q := range queries {
			wv, wantFound := want[q]
			v, found, err := tbl.Lookup(q)
			if err != nil {
				t.Fatal(err)
			}
			if found != wantFound || v != wv {
				t.Errorf("source %d, key %q: moat %q/%v, postmap %q/%v", i, q, v, found, wv, wantFound)
			}
		}
		tbl.Close()
	}
}

// TestIndexConcurrentRebuild: lookups running while postmap rebuilds the
// table always get a whole answer, old or new, never an error.
func TestIndexConcurrentRebuild(t *testing.T) {
	dir := t.TempDir()
	name := buildIndex(t, dir, "k v0\n")
	tbl, err := Open("hash:"+name, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	tbl.(*indexedTable).setRecheck(0)
	done := make(chan error, 4)
	for range 4 {
		go func() {
			for range 500 {
				v, ok, err := tbl.Lookup("k")
				if err != nil || !ok || !strings.HasPrefix(v, "v") {
					done <- fmt.Errorf("lookup = %q %v %v", v, ok, err)
					return
				}
			}
			done <- nil
		}()
	}
	for i := range 20 {
		buildIndex(t, dir, fmt.Sprintf("k v%d\n", i+1))
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
