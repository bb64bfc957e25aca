package maillog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"moat/internal/config"
)

// DefaultSyslogPath is the local syslog socket glibc's syslog(3) uses.
const DefaultSyslogPath = "/dev/log"

// Setup is what FromConfig needs beyond main.cf.
type Setup struct {
	Daemon string // the tag's second part: "smtpd", "master", "postqueue"
	PID    int    // 0 means os.Getpid()
	// SyslogPath overrides /dev/log (tests listen on a socket of their
	// own).
	SyslogPath string
	// Stderr forces standard error, as "postfix start-fg" without a
	// maillog_file does for a foreground run.
	Stderr    bool
	QueueSize int
	Now       func() time.Time
}

// FromConfig chooses the sink the way Postfix 3.4+ does (postconf(5)
// maillog_file): when maillog_file is set, that file (which must start
// with one of maillog_file_prefixes; /dev/stdout and /dev/stderr are
// streams); otherwise syslog with syslog_facility. When the syslog socket
// is absent (a container without syslogd) it logs to standard error and
// says so in a warning record, rather than dropping everything as
// syslog(3) would.
func FromConfig(cfg *config.Config, s Setup) (*Logger, error) {
	name := cfg.Get("syslog_name")
	if name == "" {
		return nil, errors.New("syslog_name: empty value")
	}
	host := Hostname(cfg.Get("myhostname"))
	utf8ok, err := cfg.Bool("smtputf8_enable")
	if err != nil {
		return nil, err
	}
	opts := Options{
		SyslogName: name, Daemon: s.Daemon, PID: s.PID, UTF8: utf8ok,
		QueueSize: s.QueueSize, Now: s.Now,
		Fallback: NewStderr(host),
	}
	var notice string
	file := cfg.Get("maillog_file")
	switch {
	case file != "":
		prefixes, err := cfg.List("maillog_file_prefixes")
		if err != nil {
			return nil, err
		}
		if !allowedPrefix(file, prefixes) {
			return nil, fmt.Errorf("maillog_file value %q does not match any prefix in maillog_file_prefixes %q",
				file, strings.Join(prefixes, ", "))
		}
		switch file {
		case "/dev/stdout":
			opts.Sink = NewWriterSink(os.Stdout, host)
		case "/dev/stderr":
			opts.Sink = NewStderr(host)
		default:
			fs, err := OpenFile(file, host)
			if err != nil {
				return nil, err
			}
			opts.Sink = fs
		}
	case s.Stderr:
		opts.Sink = NewStderr(host)
	default:
		fac, err := Facility(cfg.Get("syslog_facility"))
		if err != nil {
			return nil, err
		}
		path := s.SyslogPath
		if path == "" {
			path = DefaultSyslogPath
		}
		ss, err := DialSyslog(path, fac)
		if err != nil {
			opts.Sink = NewStderr(host)
			notice = fmt.Sprintf("maillog: %v; logging to standard error", err)
		} else {
			opts.Sink = ss
		}
	}
	l := New(opts)
	if notice != "" {
		l.Warning("%s", notice)
	}
	return l, nil
}

// allowedPrefix reports whether path starts with one of prefixes. Like
// Postfix it compares strings, so "/var" admits "/var/log/moat.log"; moat
// additionally refuses any ".." element so a prefix cannot be escaped.
func allowedPrefix(path string, prefixes []string) bool {
	for _, el := range strings.Split(path, "/") {
		if el == ".." {
			return false
		}
	}
	for _, p := range prefixes {
		if p != "" && strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// Rotate renames the log file to "file.SUFFIX", SUFFIX being
// maillog_file_rotate_suffix expanded with strftime(3) conversions at now,
// and opens a new file, as "postfix logrotate" does (postfix(1)). It
// returns the new name of the old file; compressing it
// (maillog_file_compressor) is left to the caller, off the logging path.
func (l *Logger) Rotate(ctx context.Context, suffix string, now time.Time) (string, error) {
	var rotated string
	err := l.c.call(ctx, func() error {
		fs, ok := l.c.sink.(*FileSink)
		if !ok {
			return errors.New("maillog: logrotate: maillog_file is not a regular file")
		}
		sfx, err := Strftime(suffix, now)
		if err != nil {
			return fmt.Errorf("maillog_file_rotate_suffix: %w", err)
		}
		rotated = fs.Path() + "." + sfx
		if _, err := os.Lstat(rotated); err == nil {
			return fmt.Errorf("maillog: logrotate: %s already exists", rotated)
		}
		if err := os.Rename(fs.Path(), rotated); err != nil {
			return fmt.Errorf("maillog: logrotate: %w", err)
		}
		return fs.Reopen()
	})
	return rotated, err
}
