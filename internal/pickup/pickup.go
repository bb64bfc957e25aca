// Package pickup is pickup(8): it takes the files postdrop leaves in
// queue_directory/maildrop/ (internal/maildrop) through cleanup into the
// queue, as Postfix's pickup hands them to cleanup(8).
//
// Two pickups may run for a moment (a reload starts the new one before
// the old one stops); each file is locked while it is taken.
//
// It finds work by reading the directory once a second (and at once when
// woken): a readdir of a directory that is normally empty costs next to
// nothing, and needs no socket that every user's postdrop could reach
// (Postfix's postdrop writes to the public/pickup FIFO, which makes the
// FIFO a way for any user to wake a daemon; moat's pickup simply polls,
// so a submission waits at most a second).
//
// Every file is hostile input from a local user: it is opened without
// following links, must be a regular file with one link and within the
// size limit, and must parse and verify (internal/maildrop) before any of
// it is queued. The submitting user is the file's owner, which the kernel
// set, never anything the file says. A malformed file is logged and
// removed, as Postfix's pickup does. The maildrop file is removed only
// after the queue file is durably committed, so a crash in between makes
// a duplicate at worst, never a loss.
package pickup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"moat/internal/cleanup"
	"moat/internal/config"
	"moat/internal/maildrop"
	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/queue"
	"moat/internal/rewrite"
)

// Deps is what the pickup service needs.
type Deps struct {
	Config *config.Config
	// Log logs as postfix/pickup; the message-id line is logged as
	// postfix/cleanup (CleanupLog, default Log.With("cleanup", pid)), as
	// Postfix's cleanup(8) logs it.
	Log        *maillog.Logger
	CleanupLog *maillog.Logger
	Queue      *queue.Queue
	// Cleanup holds header_checks and friends, opened once (nil: opened
	// from Config by New).
	Cleanup *cleanup.Settings
	// Rewrite, if set, rewrites the envelope before commit (canonical and
	// virtual alias mapping, cleanup(8)); an error leaves the file for
	// the next scan.
	Rewrite func(*queue.Envelope) error
	// Headers rewrites the addresses in the message headers, From:,
	// To: ..., in the local context, as cleanup(8) always does for local
	// submissions (canonical_classes header_*, masquerade_classes,
	// append_at_myorigin). nil: New opens its own from Config, which Run
	// (or Close) releases.
	Headers *rewrite.Rewriter
	// Wake tells the queue manager that mail arrived (nil: nothing).
	Wake func()
	// Interval is how often the directory is read; 0 means a second.
	Interval time.Duration
	Now      func() time.Time
}

// Pickup is the running service.
type Pickup struct {
	d        Deps
	dir      string
	limit    int64
	origin   string
	appendAt bool
	host     string
	mailName string
	// filter is content_filter (postconf(5)): local submissions go to
	// it too, as Postfix's cleanup sends them.
	filter string
	drop   map[string]bool
	// ownHeaders is the header rewriter New opened (Deps.Headers nil).
	ownHeaders *rewrite.Rewriter
	wake       chan struct{}
	mu         sync.Mutex
}

// New reads the parameters pickup uses: message_size_limit, myorigin,
// append_at_myorigin, myhostname, mail_name, message_drop_headers.
func New(d Deps) (*Pickup, error) {
	if d.Config == nil || d.Queue == nil || d.Log == nil {
		return nil, errors.New("pickup: Config, Queue and Log are required")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Interval <= 0 {
		d.Interval = time.Second
	}
	if d.CleanupLog == nil {
		d.CleanupLog = d.Log.With("cleanup", os.Getpid())
	}
	cfg := d.Config
	limit, err := cfg.Size("message_size_limit")
	if err != nil {
		return nil, err
	}
	appendAt, err := cfg.Bool("append_at_myorigin")
	if err != nil {
		return nil, err
	}
	names, err := cfg.List("message_drop_headers")
	if err != nil {
		return nil, err
	}
	p := &Pickup{
		d: d, dir: filepath.Join(d.Queue.Dir(), queue.Maildrop), limit: limit,
		origin: cfg.Get("myorigin"), appendAt: appendAt, host: cfg.Get("myhostname"),
		mailName: cfg.Get("mail_name"), drop: map[string]bool{}, wake: make(chan struct{}, 1),
		filter: strings.TrimSpace(cfg.Get("content_filter")),
	}
	for _, n := range names {
		p.drop[strings.ToLower(n)] = true
	}
	if d.Cleanup == nil {
		return nil, errors.New("pickup: cleanup settings are required")
	}
	if d.Headers == nil {
		log := d.Log
		mo, err := maps.DaemonOptions(cfg, func(msg string) { log.Warning("%s", msg) })
		if err != nil {
			return nil, fmt.Errorf("pickup: %w", err)
		}
		if p.ownHeaders, err = rewrite.New(cfg, mo); err != nil {
			return nil, fmt.Errorf("pickup: %w", err)
		}
		p.d.Headers = p.ownHeaders
	}
	return p, nil
}

// Close releases the tables New opened; Run calls it when it returns.
func (p *Pickup) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.ownHeaders.Close()
	if p.ownHeaders != nil {
		p.d.Headers, p.ownHeaders = nil, nil
	}
	return err
}

// Run scans maildrop/ until ctx ends.
func (p *Pickup) Run(ctx context.Context) error {
	defer p.Close()
	t := time.NewTicker(p.d.Interval)
	defer t.Stop()
	for {
		if _, err := p.Scan(); err != nil {
			p.d.Log.Warning("%v", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-p.wake:
		}
	}
}

// Wake asks for a scan now.
func (p *Pickup) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Scan takes every finished file in maildrop/ into the queue once and
// returns how many it queued.
func (p *Pickup) Scan() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, err := os.Open(p.dir)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", p.dir, err)
	}
	defer d.Close()
	n := 0
	for {
		// In batches, so a flood of files is not read into memory whole.
		ents, err := d.ReadDir(256)
		for _, e := range ents {
			name := e.Name()
			switch {
			case maildrop.IsFinal(name):
				if p.take(name) {
					n++
				}
			case maildrop.IsTemp(name):
				p.stale(name)
			default:
				// Only postdrop writes here; anything else is removed so
				// it cannot pile up (Postfix's pickup removes what it
				// cannot read, too).
				p.d.Log.Warning("maildrop/%s: unexpected file name: removing it", name)
				p.remove(name)
			}
		}
		if errors.Is(err, io.EOF) || len(ents) == 0 {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read %s: %w", p.dir, err)
		}
	}
}

// stale removes a temporary file whose writer has been gone long enough.
func (p *Pickup) stale(name string) {
	st, err := os.Lstat(filepath.Join(p.dir, name))
	if err != nil || p.d.Now().Sub(st.ModTime()) < maildrop.StaleAge {
		return
	}
	p.d.Log.Warning("maildrop/%s: unfinished file older than %v: removing it", name, maildrop.StaleAge)
	p.remove(name)
}

func (p *Pickup) remove(name string) {
	if err := os.Remove(filepath.Join(p.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.d.Log.Warning("remove maildrop/%s: %v", name, err)
	}
}

// take queues one file; it reports whether a message was queued. A file
// that cannot be taken now for a temporary reason (queue write error,
// rewrite error) stays for the next scan.
func (p *Pickup) take(name string) bool {
	path := filepath.Join(p.dir, name)
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		p.d.Log.Warning("maildrop/%s: open: %v: removing it", name, err)
		p.remove(name)
		return false
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		p.d.Log.Warning("maildrop/%s: fstat: %v", name, err)
		return false
	}
	// A reload runs the new pickup before the old one stops: the lock
	// keeps two from taking one file, and the second look at the name
	// keeps a late one from taking a file already queued and unlinked.
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false
	}
	var now syscall.Stat_t
	if err := syscall.Lstat(path, &now); err != nil || now.Ino != st.Ino || now.Dev != st.Dev {
		return false
	}
	uid := int(st.Uid)
	max := int64(maildrop.MaxEnvelope + maildrop.TrailerLen)
	if p.limit > 0 {
		max += p.limit
	} else {
		max = 1<<63 - 1
	}
	switch {
	case st.Mode&syscall.S_IFMT != syscall.S_IFREG:
		err = errors.New("not a regular file")
	case st.Nlink != 1:
		err = fmt.Errorf("%d hard links", st.Nlink)
	case st.Size > max:
		err = fmt.Errorf("%d bytes, more than the limit", st.Size)
	}
	var mf *maildrop.File
	if err == nil {
		mf, err = maildrop.Read(f, st.Size, p.limit)
	}
	if err != nil {
		p.d.Log.Warning("uid=%d: maildrop/%s: malformed input: %v: removing it", uid, name, err)
		p.remove(name)
		return false
	}
	id, ok := p.queue(f, mf, uid)
	if !ok {
		return false
	}
	p.remove(name)
	if id != "" && p.d.Wake != nil {
		p.d.Wake()
	}
	return id != ""
}

// qualify appends @$myorigin to an address without a domain, as
// trivial-rewrite(8) does for local submissions (append_at_myorigin).
func (p *Pickup) qualify(addr string) string {
	if addr == "" || !p.appendAt || strings.Contains(addr, "@") || p.origin == "" {
		return addr
	}
	return addr + "@" + p.origin
}

// queue runs one message through cleanup into incoming/. ok is false when
// the file must stay (a temporary failure); id is "" when the message was
// dropped on purpose (rejected, discarded: already logged).
func (p *Pickup) queue(f *os.File, mf *maildrop.File, uid int) (id string, ok bool) {
	w, err := p.d.Queue.NewMessage()
	if err != nil {
		p.d.Log.Warning("create queue file: %v", err)
		return "", false
	}
	committed := false
	defer func() {
		if !committed {
			w.Abort()
		}
	}()
	id = w.ID()
	now := p.d.Now()
	p.d.Log.Info("%s: uid=%d from=<%s>", id, uid, mf.Sender)
	sender := p.qualify(mf.Sender)
	env := queue.Envelope{
		Sender: sender, EnvID: mf.EnvID, Ret: mf.Ret, Arrival: now,
	}
	notify, _ := maildrop.ParseNotify(mf.Notify)
	for _, r := range mf.Recipients {
		env.Recipients = append(env.Recipients, queue.Recipient{Address: p.qualify(r), Notify: notify})
	}
	if mf.Body == "8BITMIME" {
		env.Flags |= queue.Flag8BitMIME
	}
	if mf.Verify {
		// sendmail -bv: the queue manager reports instead of delivering.
		env.Flags |= queue.FlagVerify
	}
	opts := p.d.Cleanup.Options()
	opts.QueueID = id
	opts.Origin = "local"
	opts.Env = maillog.Envelope{Sender: sender, HasSender: true, Recipient: env.Recipients[0].Address, HasRecipient: true}
	opts.Received = Received(p.host, p.mailName, uid, id, now)
	opts.AddMissing = &cleanup.Missing{Time: now, Sender: sender, FullName: mf.FullName, MyHostname: p.host}
	opts.RewriteHeader = p.d.Headers.HeaderFunc(rewrite.HeaderLocal)
	clog := p.d.CleanupLog
	opts.Log = func(rec string) { clog.Info("%s", rec) }
	cf := cleanup.New(w, opts)
	hf := &headerFilter{w: cf, drop: p.drop}
	if _, err := io.Copy(hf, mf.Content(f)); err != nil {
		p.d.Log.Warning("%s: queue file write error: %v", id, err)
		return "", false
	}
	if err := hf.Close(); err != nil {
		p.d.Log.Warning("%s: queue file write error: %v", id, err)
		return "", false
	}
	if err := cf.Close(); err != nil {
		p.d.Log.Warning("%s: queue file write error: %v", id, err)
		return "", false
	}
	res := cf.Result()
	msgID := hf.messageID
	if msgID == "" {
		for _, h := range res.Added {
			if name, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(name, "Message-Id") {
				msgID = strings.TrimSpace(v)
			}
		}
	}
	clog.Info("%s", maillog.MessageID(id, msgID))
	env.MessageID = msgID
	env.Filter = p.filter
	if res.Filter != "" {
		env.Filter = res.Filter
	}
	switch {
	case res.TooManyHops:
		// Postfix's cleanup bounces such mail to its sender; here the
		// message is queued for error(8), which bounces every recipient
		// with the notice the queue manager sends.
		clog.Info("%s: reject: too many hops; from=<%s>", id, sender)
		env.Filter = "error:5.4.0 too many hops"
	case res.Reject != "":
		clog.Info("%s: reject: %s; from=<%s>", id, res.Reject, sender)
		env.Filter = "error:" + res.Reject
	case res.Discard:
		return "", true
	}
	if res.Hold {
		env.Flags |= queue.FlagHold
	}
	if res.Redirect != "" {
		env.Recipients = []queue.Recipient{{Address: res.Redirect}}
	}
	for _, b := range res.BCC {
		env.Recipients = append(env.Recipients, queue.Recipient{Address: b})
	}
	if p.d.Rewrite != nil {
		if err := p.d.Rewrite(&env); err != nil {
			p.d.Log.Warning("%s: address rewriting: %v: trying again later", id, err)
			return "", false
		}
	}
	w.Envelope = env
	cid, err := w.Commit()
	committed = true
	if err != nil {
		p.d.Log.Warning("%s: queue file write error: %v", id, err)
		return "", false
	}
	return cid, true
}

// Received is the header Postfix's cleanup puts on a locally submitted
// message (no client, so no "from" clause; the submitting uid instead):
//
//	Received: by HOST (MAIL_NAME, from userid UID)
//		id QUEUEID; DATE
func Received(host, mailName string, uid int, id string, t time.Time) string {
	return "Received: by " + host + " (" + mailName + ", from userid " + strconv.Itoa(uid) + ")\n\tid " + id + "; " + cleanup.MailDate(t)
}
