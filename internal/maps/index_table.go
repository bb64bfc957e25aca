package maps

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// recheckInterval bounds how often a lookup stats the index file to notice
// that postmap replaced it (SEEDS: tables are re-read after a rebuild).
// Once a second keeps the cost of the stat negligible under load.
const recheckInterval = time.Second

// staleGrace is Postfix's allowance before warning that an index is older
// than its source: a source edited in the last 100 seconds is probably
// being rebuilt right now.
const staleGrace = 100 * time.Second

// indexedTable serves hash:, btree:, lmdb: and cdb: from moat's index file.
type indexedTable struct {
	typ, name, path string
	opts            Options
	recheck         time.Duration // recheckInterval; tests shorten it

	// due is set by a timer once the recheck interval has passed; a
	// lookup that finds it set stats the file. An atomic load costs far
	// less than reading the clock on every lookup (time.Now was a third
	// of the lookup time in BenchmarkLookup).
	due   atomic.Bool
	timer *time.Timer

	mu     sync.RWMutex
	cur    *mappedIndex
	err    error // why the current file could not be loaded; lookups fail
	closed bool
}

// mappedIndex is one opened generation of the index file.
type mappedIndex struct {
	data     *indexData
	mem      []byte // the mmap'd region, nil when the file was empty
	dev, ino uint64
	mtime    int64
	size     int64
}

func openIndexed(typ, name string, opts Options) (Table, error) {
	if name == "" {
		return nil, fmt.Errorf("need dictionary type:name, got %q", typ+":")
	}
	t := &indexedTable{typ: typ, name: name, path: IndexPath(typ, name), opts: opts, recheck: recheckInterval}
	m, err := t.load()
	if err != nil {
		return nil, err
	}
	t.cur = m
	t.timer = time.AfterFunc(t.recheck, func() { t.due.Store(true) })
	return t, nil
}

// load opens, checks and maps the current index file.
func (t *indexedTable) load() (*mappedIndex, error) {
	f, err := openTableFile(t.path, t.opts)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", t.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", t.path, err)
	}
	m := &mappedIndex{mtime: fi.ModTime().UnixNano(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		m.dev, m.ino = uint64(st.Dev), st.Ino
	}
	var buf []byte
	if fi.Size() > 0 {
		if fi.Size() != int64(int(fi.Size())) {
			return nil, fmt.Errorf("open database %s: file too large", t.path)
		}
		buf, err = syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			return nil, fmt.Errorf("open database %s: mmap: %w", t.path, err)
		}
		m.mem = buf
	}
	var d *indexData
	if ferr := guardFault(t.path, func() { d, err = parseIndex(buf) }); ferr != nil {
		err = ferr
	}
	if err != nil {
		m.unmap()
		if errors.Is(err, errNotIndex) {
			return nil, fmt.Errorf("%s is not a moat index; rebuild it with `moat postmap %s:%s`", t.path, t.typ, t.name)
		}
		return nil, fmt.Errorf("open database %s: %w", t.path, err)
	}
	m.data = d
	t.warnIfStale(fi.ModTime())
	return m, nil
}

// warnIfStale gives Postfix's warning when the source file was edited
// after the index was built and postmap was not run since.
func (t *indexedTable) warnIfStale(dbTime time.Time) {
	src, err := os.Stat(t.name)
	if err != nil {
		return
	}
	if src.ModTime().After(dbTime) && src.ModTime().Before(time.Now().Add(-staleGrace)) {
		t.opts.warnf("database %s is older than source file %s", t.path, t.name)
	}
}

func (m *mappedIndex) unmap() {
	if m != nil && m.mem != nil {
		syscall.Munmap(m.mem)
		m.mem = nil
	}
}

// Lookup implements Table.
func (t *indexedTable) Lookup(key string) (value string, found bool, err error) {
	key = t.opts.fold(key)
	t.maybeReload()
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.err != nil {
		return "", false, t.err
	}
	if t.cur == nil {
		return "", false, fmt.Errorf("table %s:%s is closed", t.typ, t.name)
	}
	return t.cur.lookup(key, t.path)
}

// lookup reads the mapped file. If the file is truncated under the mapping
// (someone ran a tool that rewrites it in place, such as Postfix's own
// postmap), touching the lost pages raises SIGBUS; SetPanicOnFault turns
// that into a recoverable panic, reported as a temporary lookup error
// instead of killing the daemon.
func (m *mappedIndex) lookup(key, path string) (value string, found bool, err error) {
	ferr := guardFault(path, func() {
		value, found, err = m.data.lookup(key)
	})
	if ferr != nil {
		return "", false, ferr
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", path, err)
	}
	return value, found, err
}

// guardFault runs fn, which reads a mapping of path, and turns a memory
// fault (the file shrank under the mapping) into an error. Other panics
// are bugs and propagate.
func guardFault(path string, fn func()) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			err = fmt.Errorf("%s: file changed during lookup", path)
		}
	}()
	fn()
	return nil
}

// maybeReload reopens the index when postmap has replaced it. WriteIndex
// renames a complete new file into place, so the new inode is always whole.
func (t *indexedTable) maybeReload() {
	if !t.due.Load() || !t.due.CompareAndSwap(true, false) {
		return
	}
	defer t.rearm()
	fi, statErr := os.Stat(t.path)
	t.mu.RLock()
	same := statErr == nil && t.cur != nil && t.err == nil && t.cur.matches(fi)
	t.mu.RUnlock()
	if same {
		return
	}
	m, err := t.load()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		m.unmap()
		return
	}
	if err != nil {
		// Keep failing rather than answer from a file that is gone or was
		// rewritten in place: a temporary error defers mail, a stale
		// answer could let through what the new table rejects.
		t.err = err
		t.cur.unmap()
		t.cur = nil
		return
	}
	t.cur.unmap()
	t.cur, t.err = m, nil
}

// rearm schedules the next freshness check.
func (t *indexedTable) rearm() {
	if t.recheck <= 0 {
		t.due.Store(true)
		return
	}
	t.timer.Reset(t.recheck)
}

// setRecheck changes the check interval (tests use 0: check every lookup).
func (t *indexedTable) setRecheck(d time.Duration) {
	t.timer.Stop()
	t.recheck = d
	t.due.Store(false)
	t.rearm()
}

func (m *mappedIndex) matches(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return uint64(st.Dev) == m.dev && st.Ino == m.ino &&
		fi.ModTime().UnixNano() == m.mtime && fi.Size() == m.size
}

// Pattern implements Table: an index holds exact keys.
func (t *indexedTable) Pattern() bool { return false }

// Close implements Table.
func (t *indexedTable) Close() error {
	t.timer.Stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur.unmap()
	t.cur, t.closed = nil, true
	return nil
}
