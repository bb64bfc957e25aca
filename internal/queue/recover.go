package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// RecoverStats says what Recover did.
type RecoverStats struct {
	TempRemoved int // half-written files removed (never acknowledged)
	Corrupt     int // files moved to corrupt/
	Rehashed    int // messages moved to the directory hash_queue_depth now gives them
	Kept        int // valid messages left in place
}

// Recover runs at start-up, before any producer opens the queue (`postfix
// start`): it removes temporary files, which a crash left half-written and
// which were never acknowledged, and moves every file that fails validation
// to corrupt/ with a logged reason, so that the scheduler only sees whole
// messages. It checks structure and the envelope sum; with verifyContent it
// also reads every message's content to check its sum. A message whose
// directory no longer matches hash_queue_names/hash_queue_depth (the admin
// changed them) moves to the directory they now give, as `postsuper` does
// after such a change.
func (q *Queue) Recover(verifyContent bool) (RecoverStats, error) {
	var st RecoverStats
	touched := map[string]bool{}
	// maildrop/ holds pickup's files, not queue files (internal/maildrop):
	// pickup judges those itself.
	for _, name := range []string{Incoming, Active, Deferred, Hold} {
		top := filepath.Join(q.dir, name)
		// Collect first, act after: rehashing moves files into
		// directories the walk has yet to visit.
		type file struct {
			p string
			e fs.DirEntry
		}
		var files []file
		err := filepath.WalkDir(top, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				if p != top && (len(e.Name()) != 1 || !strings.Contains(hexDigits, e.Name())) {
					return q.toCorrupt(&st, name, p, errors.New("unexpected directory"))
				}
				return nil
			}
			files = append(files, file{p, e})
			return nil
		})
		for _, f := range files {
			if err != nil {
				break
			}
			err = q.recoverFile(&st, touched, name, f.p, f.e, verifyContent)
		}
		if err != nil {
			return st, fmt.Errorf("queue: recover: %w", err)
		}
	}
	touched[filepath.Join(q.dir, Corrupt)] = st.Corrupt > 0
	for d, ok := range touched {
		if ok {
			if err := syncPath(d); err != nil {
				return st, fmt.Errorf("queue: recover: %w", err)
			}
		}
	}
	return st, nil
}

func (q *Queue) recoverFile(st *RecoverStats, touched map[string]bool, name, p string, e fs.DirEntry, verifyContent bool) error {
	if isTemp(e.Name()) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		q.logf("queue: removed unfinished file %s", p)
		st.TempRemoved++
		touched[filepath.Dir(p)] = true
		return nil
	}
	if reason := q.check(p, e, verifyContent); reason != nil {
		touched[filepath.Dir(p)] = true
		return q.toCorrupt(st, name, p, reason)
	}
	want, _ := q.path(name, e.Name())
	if want != p {
		if _, err := os.Lstat(want); err == nil {
			return q.toCorrupt(st, name, p, fmt.Errorf("duplicate of %s", want))
		}
		if err := os.Rename(p, want); err != nil {
			return err
		}
		touched[filepath.Dir(p)] = true
		touched[filepath.Dir(want)] = true
		st.Rehashed++
	}
	st.Kept++
	return nil
}

// toCorrupt moves p into corrupt/, named after its queue and file name, and
// logs why. A directory is moved whole and not descended into.
func (q *Queue) toCorrupt(st *RecoverStats, name, p string, reason error) error {
	base := name + "." + strings.ReplaceAll(strings.TrimPrefix(p, filepath.Join(q.dir, name)+"/"), "/", ".")
	dst := filepath.Join(q.dir, Corrupt, base)
	if _, err := os.Lstat(dst); err == nil {
		dst += fmt.Sprintf(".%d", os.Getpid())
	}
	if err := os.Rename(p, dst); err != nil {
		return fmt.Errorf("move %s to corrupt: %w", p, err)
	}
	q.logf("queue: %s: %v; moved to %s", p, reason, dst)
	st.Corrupt++
	if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
		return fs.SkipDir
	}
	return nil
}

func (q *Queue) check(p string, e fs.DirEntry, verifyContent bool) error {
	if !e.Type().IsRegular() {
		return errors.New("not a regular file")
	}
	if !ValidID(e.Name()) {
		return errors.New("name is not a queue ID")
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := openFile(f)
	if err != nil {
		return err
	}
	if verifyContent {
		return m.Verify()
	}
	return nil
}
