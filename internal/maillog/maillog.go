// Package maillog writes Postfix-format log records: "postfix/smtpd[PID]:
// text" to syslog, a file (maillog_file) or standard error, so the tools
// admins already run on Postfix logs (fail2ban, pflogsumm, grep patterns)
// work unchanged on moat's (postconf(5) maillog_file, syslog_name,
// syslog_facility; postlogd(8)).
//
// A Logger is created once per process from the configuration (FromConfig
// or New) and handed down; daemons derive children with With, and a session
// that matches debug_peer_list derives a verbose one with WithVerbose.
//
// Records go through one bounded in-memory queue drained by one writer
// goroutine. When the queue is full the record is dropped and counted
// rather than blocking the caller: a stuck syslogd or a full disk must not
// stall thousands of SMTP sessions (Postfix's own blocking syslog(3) call
// does exactly that). Drops are never silent: the writer logs "warning:
// maillog: N log records dropped" as soon as it catches up, and Stats
// reports the totals. Fatal and Panic records wait for room instead, and
// for the sink to write them, because they are the last words of a
// process; they do not exit, the caller does.
//
// The record texts that log tools parse (connect from, disconnect from
// with command counters, reject lines, client=, message-id=, queue active,
// removed, ...) are built by the helpers in events.go, so every daemon
// formats them once. The file and syslog formats are checked byte for byte
// against Postfix's postlog(1) in diff_test.go and syslog_diff_test.go.
package maillog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Severity is a record's level, as Postfix's msg(3) levels: info, warning,
// error, fatal and panic. Non-info records carry "severity: " before the
// text in every sink.
type Severity int

// The severities, in Postfix's order.
const (
	Info Severity = iota
	Warning
	Error
	Fatal
	Panic
)

// String returns the word Postfix puts before a non-info record's text.
func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case Error:
		return "error"
	case Fatal:
		return "fatal"
	case Panic:
		return "panic"
	}
	return "info"
}

// MaxText is the longest record text in bytes; Postfix's msg_logger and
// msg_syslog truncate to 2000 characters because unlimited logging is a
// liability (a client could otherwise make every line megabytes long).
const MaxText = 2000

// Record is one log record as the sinks receive it.
type Record struct {
	Time     time.Time
	Severity Severity
	Tag      string // "$syslog_name/daemon", e.g. "postfix/smtpd"
	PID      int
	Text     string // sanitized and truncated; without the severity word
}

// Sink writes records somewhere. Write, Reopen and Close are called from
// the Logger's single writer goroutine only, so sinks need no locking.
type Sink interface {
	Write(r *Record) error
	// Reopen closes and reopens the destination (a rotated file); sinks
	// without one return nil.
	Reopen() error
	Close() error
}

// Options configure New. The zero value logs to standard error.
type Options struct {
	// Sink receives the records; nil means standard error in the
	// maillog_file format.
	Sink Sink
	// Fallback receives records the Sink failed to write, so a failing
	// sink loses nothing silently; nil means standard error.
	Fallback Sink
	// SyslogName is $syslog_name, the tag's first part ("postfix").
	SyslogName string
	// Daemon and PID complete the tag, "SyslogName/Daemon[PID]".
	Daemon string
	PID    int
	// UTF8 keeps valid UTF-8 in texts (smtputf8_enable); otherwise every
	// non-ASCII byte becomes '?', as Postfix's printable() does.
	UTF8 bool
	// QueueSize bounds the records waiting for the sink; 0 means 8192.
	QueueSize int
	// Now returns the time stamped on records; nil means time.Now.
	Now func() time.Time
}

// Stats counts what the Logger could not deliver as asked.
type Stats struct {
	Dropped  uint64 // records dropped because the queue was full
	Fallback uint64 // records the sink failed and the fallback wrote
	Lost     uint64 // records neither sink could write
}

type control struct {
	op   func() error
	done chan error
}

type item struct {
	rec Record
	ctl *control
}

// core is what a Logger and all its children share.
type core struct {
	mu     sync.RWMutex // held for reading while enqueueing; Close takes it for writing
	closed bool
	queue  chan item
	sink   Sink
	fb     Sink
	now    func() time.Time
	utf8   bool
	done   chan struct{}

	dropped  atomic.Uint64
	reported atomic.Uint64 // drops already announced; the writer alone advances it
	fellBack atomic.Uint64
	lost     atomic.Uint64

	// noticeTag, noticePID identify the drop notices (the root logger's).
	noticeTag string
	noticePID int
}

// Logger formats and queues records for one tag. It is safe for concurrent
// use; children made by With share the queue and sink.
type Logger struct {
	c       *core
	name    string // $syslog_name
	daemon  string
	pid     int
	verbose int
}

// New starts a Logger writing to opts.Sink. Close it to flush and release
// the sink.
func New(opts Options) *Logger {
	if opts.Sink == nil {
		opts.Sink = NewStderr(Hostname(""))
	}
	if opts.Fallback == nil {
		opts.Fallback = NewStderr(Hostname(""))
	}
	if opts.SyslogName == "" {
		opts.SyslogName = "postfix"
	}
	if opts.Daemon == "" {
		opts.Daemon = "moat"
	}
	if opts.PID == 0 {
		opts.PID = os.Getpid()
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 8192
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// Go reads the local time zone on first use; do it now, before the
	// daemon chroots away from /etc/localtime, or every time stamp would
	// silently turn UTC.
	_ = time.Local.String()
	c := &core{
		queue: make(chan item, opts.QueueSize),
		sink:  opts.Sink,
		fb:    opts.Fallback,
		now:   opts.Now,
		utf8:  opts.UTF8,
		done:  make(chan struct{}),
	}
	l := &Logger{c: c, name: opts.SyslogName, daemon: opts.Daemon, pid: opts.PID}
	c.noticeTag, c.noticePID = l.Tag(), l.pid
	go c.run()
	return l
}

// With returns a child logging as "$syslog_name/daemon[pid]", for each
// daemon role (smtpd, cleanup, qmgr) of the process.
func (l *Logger) With(daemon string, pid int) *Logger {
	n := *l
	n.daemon, n.pid = daemon, pid
	return &n
}

// WithName returns a child whose tag starts with syslogName instead: a
// master.cf service may override syslog_name ("-o syslog_name=
// postfix/submission" logs as postfix/submission/smtpd).
func (l *Logger) WithName(syslogName string) *Logger {
	n := *l
	n.name = syslogName
	return &n
}

// WithVerbose returns a child whose Verbose records are written when level
// is above zero: the session logger of a client matching debug_peer_list,
// at debug_peer_level (postconf(5) debug_peer_list).
func (l *Logger) WithVerbose(level int) *Logger {
	n := *l
	n.verbose = level
	return &n
}

// Tag returns "$syslog_name/daemon", the name before "[pid]:".
func (l *Logger) Tag() string { return l.name + "/" + l.daemon }

// VerboseLevel returns the level set by WithVerbose, so callers can skip
// building costly verbose texts.
func (l *Logger) VerboseLevel() int { return l.verbose }

// Info logs an informational record: the bulk of Postfix's logging
// (connect from, client=, reject: ...).
func (l *Logger) Info(format string, args ...any) { l.log(Info, format, args...) }

// Warning logs "warning: text": a problem that does not stop the daemon.
func (l *Logger) Warning(format string, args ...any) { l.log(Warning, format, args...) }

// Error logs "error: text": a problem Postfix counts toward giving up.
func (l *Logger) Error(format string, args ...any) { l.log(Error, format, args...) }

// Fatal logs "fatal: text" and waits (up to five seconds) until the sink has
// written it. Unlike Postfix's msg_fatal it does not exit: the caller
// returns an error up to main, which exits with status 1.
func (l *Logger) Fatal(format string, args ...any) { l.logWait(Fatal, format, args...) }

// Panic logs "panic: text", an internal inconsistency, and waits like
// Fatal; the caller then stops as Fatal's caller does.
func (l *Logger) Panic(format string, args ...any) { l.logWait(Panic, format, args...) }

// Verbose logs an informational record only when this logger is verbose
// (WithVerbose), as Postfix's "if (msg_verbose) msg_info(...)" does.
func (l *Logger) Verbose(format string, args ...any) {
	if l.verbose > 0 {
		l.log(Info, format, args...)
	}
}

func (l *Logger) record(sev Severity, format string, args []any) Record {
	text := format
	if len(args) > 0 {
		text = fmt.Sprintf(format, args...)
	}
	return Record{
		Time:     l.c.now(),
		Severity: sev,
		Tag:      l.Tag(),
		PID:      l.pid,
		Text:     truncate(Printable(text, l.c.utf8), MaxText),
	}
}

func (l *Logger) log(sev Severity, format string, args ...any) {
	l.c.enqueue(l.record(sev, format, args))
}

func (l *Logger) logWait(sev Severity, format string, args ...any) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !l.c.enqueueWait(ctx, item{rec: l.record(sev, format, args)}) {
		return
	}
	_ = l.c.call(ctx, func() error { return nil })
}

// enqueue queues rec without waiting; a full queue drops it and counts.
func (c *core) enqueue(rec Record) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		c.writeClosed(&rec)
		return
	}
	select {
	case c.queue <- item{rec: rec}:
	default:
		c.dropped.Add(1)
	}
}

// enqueueWait queues it, waiting for room until ctx ends; it reports
// whether the item was queued (or, after Close, written directly).
func (c *core) enqueueWait(ctx context.Context, it item) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		if it.ctl == nil {
			c.writeClosed(&it.rec)
		}
		return false
	}
	select {
	case c.queue <- it:
		return true
	case <-ctx.Done():
		if it.ctl == nil {
			c.dropped.Add(1)
		}
		return false
	}
}

// writeClosed handles a record logged after Close: the writer is gone, so
// it goes straight to the fallback rather than nowhere.
func (c *core) writeClosed(rec *Record) {
	if err := c.fb.Write(rec); err != nil {
		c.lost.Add(1)
		return
	}
	c.fellBack.Add(1)
}

// call runs op on the writer goroutine after everything queued before it,
// and returns its error.
func (c *core) call(ctx context.Context, op func() error) error {
	ctl := &control{op: op, done: make(chan error, 1)}
	if !c.enqueueWait(ctx, item{ctl: ctl}) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("maillog: %w", err)
		}
		return errors.New("maillog: logger closed")
	}
	select {
	case err := <-ctl.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("maillog: %w", ctx.Err())
	}
}

func (c *core) run() {
	defer close(c.done)
	for it := range c.queue {
		c.reportDrops()
		if it.ctl != nil {
			it.ctl.done <- it.ctl.op()
			continue
		}
		c.write(&it.rec)
	}
	c.reportDrops()
}

func (c *core) write(rec *Record) {
	if err := c.sink.Write(rec); err == nil {
		return
	}
	if err := c.fb.Write(rec); err != nil {
		c.lost.Add(1)
		return
	}
	c.fellBack.Add(1)
}

// reportDrops logs how many records were dropped since the last report.
func (c *core) reportDrops() {
	d := c.dropped.Load()
	r := c.reported.Load()
	if d == r {
		return
	}
	c.reported.Store(d)
	c.write(&Record{
		Time:     c.now(),
		Severity: Warning,
		Tag:      c.noticeTag,
		PID:      c.noticePID,
		Text:     fmt.Sprintf("maillog: %d log records dropped: the log sink is too slow or failing", d-r),
	})
}

// Flush waits until every record queued before the call is written, or ctx
// ends.
func (l *Logger) Flush(ctx context.Context) error {
	return l.c.call(ctx, func() error { return nil })
}

// Reopen closes and reopens the log file after logrotate(8) or "postfix
// logrotate" renamed it, as postlogd(8) does on reload; records queued
// before the call go to the old file.
func (l *Logger) Reopen(ctx context.Context) error {
	return l.c.call(ctx, func() error { return l.c.sink.Reopen() })
}

// Stats returns the drop and fallback counts since New.
func (l *Logger) Stats() Stats {
	return Stats{Dropped: l.c.dropped.Load(), Fallback: l.c.fellBack.Load(), Lost: l.c.lost.Load()}
}

// Close flushes the queue (until ctx ends) and closes the sinks. Records
// logged afterwards go straight to the fallback sink.
func (l *Logger) Close(ctx context.Context) error {
	c := l.c
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.queue)
	c.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		return fmt.Errorf("maillog: close: %w", ctx.Err())
	}
	return errors.Join(c.sink.Close(), c.fb.Close())
}

// Printable replaces every byte that is not printable ASCII with '?', as
// Postfix's printable() does to all logged text, so a client cannot forge
// log lines with CR/LF or confuse terminals with escapes. With utf8 (when
// smtputf8_enable is on) valid multi-byte UTF-8 characters are kept, except
// the C1 controls U+0080..U+009F, which Postfix keeps and moat replaces
// (U+009B is CSI to some terminals).
func Printable(s string, utf8ok bool) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		ch := s[i]
		if ch >= 0x20 && ch < 0x7f {
			b = append(b, ch)
			i++
			continue
		}
		if utf8ok && ch >= 0x80 {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError && n > 1 && !isC1(r) {
				b = append(b, s[i:i+n]...)
				i += n
				continue
			}
		}
		b = append(b, '?')
		i++
	}
	return string(b)
}

// isC1 reports the C1 control characters (U+0080..U+009F), which some
// terminals obey like escape sequences.
func isC1(r rune) bool { return r >= 0x80 && r <= 0x9f }

// truncate cuts s to at most n bytes without splitting a UTF-8 character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
