package postqueue

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"moat/internal/queue"
)

// TriggerDir is the directory, under queue_directory, where postqueue
// leaves requests for the scheduler: Postfix's public/ directory, where
// postqueue -f writes to the qmgr FIFO and the flush socket. moat uses one
// small file per request instead of a FIFO so that a request made while
// the scheduler is down is not lost and needs no reader to be present; the
// scheduler takes them with TakeRequests when it starts and whenever the
// directory changes.
const TriggerDir = "public"

// Request kinds.
const (
	// FlushAll asks for every deferred message to be tried now
	// (postqueue -f, sendmail -q).
	FlushAll = "flush"
	// FlushID asks for one message to be tried now (postqueue -i).
	FlushID = "flush-id"
	// FlushSite asks for mail to one destination to be tried now
	// (postqueue -s, ETRN).
	FlushSite = "flush-site"
)

// Request is one thing postqueue asked of the scheduler.
type Request struct {
	Kind string // FlushAll, FlushID or FlushSite
	Arg  string // the queue ID or site; empty for FlushAll
}

// requestPrefix starts every request file name; names without it (an
// editor's backup, a half-written temporary) are ignored.
const requestPrefix = "req."

// WriteRequest leaves r for the scheduler in queueDir/public. The file is
// written under a temporary name and renamed, so the scheduler never reads a
// partial request. A missing public/ directory means the mail system was
// never started here; the error says so, as Postfix's "mail system is
// down" does.
func WriteRequest(queueDir string, r Request) error {
	dir := filepath.Join(queueDir, TriggerDir)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%s: no trigger directory", dir)
	}
	line := r.Kind
	if r.Arg != "" {
		line += " " + r.Arg
	}
	if strings.ContainsAny(line, "\n\r\x00") {
		return fmt.Errorf("request %q: bad characters", line)
	}
	name := fmt.Sprintf("%s%d.%d", requestPrefix, time.Now().UnixNano(), os.Getpid())
	tmp := filepath.Join(dir, "tmp."+name)
	// Readable by the queue manager, which runs as mail_owner while
	// root may be the one asking (the request holds no secret).
	if err := os.WriteFile(tmp, []byte(line+"\n"), 0o644); err != nil {
		return fmt.Errorf("trigger: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil { // whatever the umask
		os.Remove(tmp)
		return fmt.Errorf("trigger: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("trigger: %w", err)
	}
	wakeQmgr(dir, 'D')
	return nil
}

// WakeQmgr asks the queue manager to scan incoming/ now (Postfix's
// QMGR_REQ_SCAN_INCOMING, the byte cleanup writes after a commit), for
// commands that put mail there: postsuper -r, whose copies Postfix's
// cleanup would announce. Without a running queue manager it does
// nothing; the next start finds the mail.
func WakeQmgr(queueDir string) {
	wakeQmgr(filepath.Join(queueDir, TriggerDir), 'I')
}

// wakeQmgr writes one request byte (req: 'D', Postfix's
// QMGR_REQ_SCAN_DEFERRED, or 'I', QMGR_REQ_SCAN_INCOMING) to the queue
// manager's FIFO (public/qmgr, the one the master creates and
// smtpd writes to), so the request is taken now rather than at the next
// periodic scan. It never blocks: without a reader (moat stopped) or with a
// full FIFO the request file alone is enough.
func wakeQmgr(dir string, req byte) {
	fd, err := syscall.Open(filepath.Join(dir, "qmgr"), syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	syscall.Write(fd, []byte{req})
	syscall.Close(fd)
}

// TakeRequests reads and removes the pending requests in queueDir/public,
// oldest first. Malformed requests are removed and skipped: they come from
// local users, and the worst a bad one could do is ask for a flush.
func TakeRequests(queueDir string) ([]Request, error) {
	dir := filepath.Join(queueDir, TriggerDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("trigger: %w", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), requestPrefix) && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []Request
	for _, n := range names {
		p := filepath.Join(dir, n)
		r, ok := readRequest(p)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return out, fmt.Errorf("trigger: %w", err)
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

func readRequest(p string) (Request, bool) {
	f, err := os.Open(p)
	if err != nil {
		return Request{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1024), 1024)
	if !sc.Scan() {
		return Request{}, false
	}
	return ParseRequest(sc.Text())
}

// ParseRequest parses one request line as WriteRequest writes it.
func ParseRequest(line string) (Request, bool) {
	kind, arg, sep := strings.Cut(line, " ")
	switch kind {
	case FlushAll:
		return Request{Kind: kind}, !sep
	case FlushID:
		return Request{Kind: kind, Arg: arg}, queue.ValidID(arg)
	case FlushSite:
		return Request{Kind: kind, Arg: arg}, arg != "" && !strings.ContainsAny(arg, " \t")
	}
	return Request{}, false
}
