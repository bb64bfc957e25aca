package proxymap

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"moat/internal/maps"
)

// entry is one shared open table. Lookups from every client run under the
// read lock, concurrently; opening and reopening take the write lock, so
// a table is opened once however many clients ask at the same moment, and
// is never closed under a lookup.
type entry struct {
	srv  *server
	name string // "type:name"
	opts maps.Options
	file string // the file whose change means reopening; "" for none

	nextCheck atomic.Int64 // unix nanoseconds of the next change check

	mu        sync.RWMutex
	t         maps.Table
	pattern   bool
	stamp     fileStamp
	openErr   error
	openErrAt time.Time
	closed    bool
}

// watchedFile is the file the server must watch for table name. The
// indexed types (hash, btree, lmdb, cdb) notice a rebuild by themselves,
// and unix: reads its file at each lookup; the types read into memory at
// open (texthash, regexp, pcre, cidr) are reopened by the server when
// their file changes — Postfix's proxymap restarts for the same reason
// ("table ... has changed -- restarting").
func watchedFile(name string) string {
	typ, file, err := maps.Split(name)
	if err != nil {
		return ""
	}
	switch typ {
	case "texthash", "regexp", "pcre", "cidr":
		return file
	}
	return ""
}

// fileStamp identifies one version of a file: a rename puts a new inode in
// place, an edit in place changes the time or size.
type fileStamp struct {
	dev, ino    uint64
	mtime, size int64
	missing     bool
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{missing: true}
	}
	st := fileStamp{mtime: fi.ModTime().UnixNano(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino = uint64(sys.Dev), sys.Ino
	}
	return st
}

var errClosed = errors.New("proxymap is shutting down")

// open makes sure the table is open and reports its kind.
func (e *entry) open() (pattern bool, err error) {
	e.maybeReopen()
	e.mu.RLock()
	if e.t != nil {
		p := e.pattern
		e.mu.RUnlock()
		return p, nil
	}
	e.mu.RUnlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.openLocked()
}

// openLocked opens the table unless it is open. A failure is remembered
// for openRetryDelay and returned to the requests in between. The caller
// holds e.mu for writing.
func (e *entry) openLocked() (bool, error) {
	if e.closed {
		return false, errClosed
	}
	if e.t != nil {
		return e.pattern, nil
	}
	if e.openErr != nil && time.Since(e.openErrAt) < openRetryDelay {
		return false, e.openErr
	}
	// Stamp before opening: a change during the open is then seen by
	// the next check instead of being mistaken for what was read.
	var st fileStamp
	if e.file != "" {
		st = stampOf(e.file)
	}
	t, err := maps.Open(e.name, e.opts)
	if err != nil {
		e.openErr, e.openErrAt = err, time.Now()
		e.srv.log.Warning("%v", err)
		return false, err
	}
	e.t, e.pattern, e.stamp, e.openErr = t, t.Pattern(), st, nil
	e.nextCheck.Store(time.Now().Add(e.srv.recheck).UnixNano())
	e.srv.opens.Add(1)
	return e.pattern, nil
}

// lookup asks the open table, opening it first if needed.
func (e *entry) lookup(key string) (value string, found, pattern bool, err error) {
	for range 3 {
		e.maybeReopen()
		e.mu.RLock()
		if e.t != nil {
			value, found, err = e.t.Lookup(key)
			pattern = e.pattern
			e.mu.RUnlock()
			return value, found, pattern, err
		}
		e.mu.RUnlock()
		if _, err := e.open(); err != nil {
			return "", false, false, err
		}
	}
	// Reopened under us three times in a row: the file is being
	// rewritten right now; the client retries later.
	return "", false, false, errors.New("table " + e.name + " keeps changing")
}

// maybeReopen reopens a file-backed table whose file changed, at most one
// check per recheck interval whatever the request rate.
func (e *entry) maybeReopen() {
	if e.file == "" {
		return
	}
	now := time.Now().UnixNano()
	next := e.nextCheck.Load()
	if now < next || !e.nextCheck.CompareAndSwap(next, now+int64(e.srv.recheck)) {
		return
	}
	st := stampOf(e.file)
	e.mu.RLock()
	same := e.t == nil || e.stamp == st
	e.mu.RUnlock()
	if same {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.t == nil || e.closed || e.stamp == st {
		return
	}
	e.srv.log.Info("table %s has changed -- reopening", e.name)
	e.t.Close()
	e.t, e.openErr = nil, nil
	// A table that no longer opens fails its lookups (temporary errors
	// that defer mail) rather than answer from the old contents, which
	// could let through what the new file rejects.
	_, _ = e.openLocked()
}

func (e *entry) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.t != nil {
		e.t.Close()
		e.t = nil
	}
	e.closed = true
}
