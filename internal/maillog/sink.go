package maillog

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Hostname returns the first label of name (myhostname), which is what
// Postfix's postlogd(8) puts in each maillog_file line; "" means the
// system host name.
func Hostname(name string) string {
	if name == "" {
		name, _ = os.Hostname()
	}
	if i := strings.IndexByte(name, '.'); i >= 0 {
		name = name[:i]
	}
	if name == "" {
		name = "localhost"
	}
	return name
}

// FileLine formats r as Postfix's maillog_file does (msg_logger.c in
// Postfix 3.4+): "Mon DD HH:MM:SS host tag[pid]: [severity: ]text\n", local
// time with a zero-padded day (strftime "%b %d %H:%M:%S") and the host
// name's first label.
func FileLine(r *Record, host string) []byte {
	b := make([]byte, 0, 64+len(r.Tag)+len(r.Text))
	b = r.Time.AppendFormat(b, "Jan 02 15:04:05 ")
	b = append(b, host...)
	b = append(b, ' ')
	b = appendBody(b, r)
	return append(b, '\n')
}

// appendBody appends "tag[pid]: [severity: ]text", the part every sink
// shares.
func appendBody(b []byte, r *Record) []byte {
	b = append(b, r.Tag...)
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(r.PID), 10)
	b = append(b, "]: "...)
	if r.Severity != Info {
		b = append(b, r.Severity.String()...)
		b = append(b, ": "...)
	}
	return append(b, r.Text...)
}

// WriterSink writes maillog_file-format lines to a stream such as standard
// error, or standard output for "maillog_file = /dev/stdout" (containers,
// "postfix start-fg").
type WriterSink struct {
	w    io.Writer
	host string
}

// NewStderr returns a sink writing file-format lines to standard error; it
// is the fallback when syslog or the log file fails.
func NewStderr(host string) *WriterSink { return &WriterSink{w: os.Stderr, host: host} }

// NewWriterSink returns a sink writing file-format lines to w.
func NewWriterSink(w io.Writer, host string) *WriterSink { return &WriterSink{w: w, host: host} }

// Write writes one line with one write call, so lines from several
// processes sharing the stream do not interleave.
func (s *WriterSink) Write(r *Record) error {
	if _, err := s.w.Write(FileLine(r, s.host)); err != nil {
		return fmt.Errorf("maillog: write: %w", err)
	}
	return nil
}

// Reopen does nothing: a stream has no name to reopen.
func (s *WriterSink) Reopen() error { return nil }

// Close leaves the stream open: it belongs to the process.
func (s *WriterSink) Close() error { return nil }

// FileSink appends to maillog_file.
type FileSink struct {
	path string
	host string
	f    *os.File
}

// OpenFile opens path for appending, creating it with mode 0640: mail logs
// name people and their correspondents, so unlike Postfix's world-readable
// 0644 only the owner and the file's group (Debian's "adm" convention for
// logs) may read it. It refuses a symbolic link, so a local user who can
// write the log directory cannot point the log at another file (Postfix
// opens it with safe_open for the same reason).
func OpenFile(path, host string) (*FileSink, error) {
	s := &FileSink{path: path, host: host}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return fmt.Errorf("maillog_file %s: %w", s.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("maillog_file %s: %w", s.path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("maillog_file %s: not a regular file", s.path)
	}
	s.f = f
	return nil
}

// Write appends one line with one write call (O_APPEND keeps lines whole
// when several processes share the file).
func (s *FileSink) Write(r *Record) error {
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	if _, err := s.f.Write(FileLine(r, s.host)); err != nil {
		return fmt.Errorf("maillog_file %s: %w", s.path, err)
	}
	return nil
}

// Reopen closes the file and opens the path again, picking up the new file
// after rotation.
func (s *FileSink) Reopen() error {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	return s.open()
}

// Close closes the file.
func (s *FileSink) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fmt.Errorf("maillog_file %s: %w", s.path, err)
	}
	return nil
}

// Path returns the file's name.
func (s *FileSink) Path() string { return s.path }

// Facility returns the syslog(3) facility code for a syslog_facility value
// (postconf(5) syslog_facility: "mail" by default).
func Facility(name string) (int, error) {
	switch name {
	case "kern":
		return 0, nil
	case "user":
		return 1, nil
	case "mail":
		return 2, nil
	case "daemon":
		return 3, nil
	case "auth":
		return 4, nil
	case "syslog":
		return 5, nil
	case "lpr":
		return 6, nil
	case "news":
		return 7, nil
	case "uucp":
		return 8, nil
	case "cron":
		return 9, nil
	case "authpriv":
		return 10, nil
	case "ftp":
		return 11, nil
	}
	if len(name) == 6 && strings.HasPrefix(name, "local") && name[5] >= '0' && name[5] <= '7' {
		return 16 + int(name[5]-'0'), nil
	}
	return 0, fmt.Errorf("syslog_facility: unknown facility %q", name)
}

// syslogLevel maps a severity to a syslog(3) level as Postfix's
// msg_syslog does: fatal and panic are both LOG_CRIT.
func syslogLevel(s Severity) int {
	switch s {
	case Warning:
		return 4 // LOG_WARNING
	case Error:
		return 3 // LOG_ERR
	case Fatal, Panic:
		return 2 // LOG_CRIT
	}
	return 6 // LOG_INFO
}

// SyslogMessage formats r as glibc's syslog(3) sends it to the local
// socket (RFC 3164 without the host name): "<PRI>Mon _D HH:MM:SS
// tag[pid]: [severity: ]text", with a space-padded day.
func SyslogMessage(r *Record, facility int) []byte {
	b := make([]byte, 0, 48+len(r.Tag)+len(r.Text))
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(facility<<3|syslogLevel(r.Severity)), 10)
	b = append(b, '>')
	b = r.Time.AppendFormat(b, "Jan _2 15:04:05 ")
	return appendBody(b, r)
}

// SyslogSink sends records to the local syslog daemon's socket.
type SyslogSink struct {
	path     string
	facility int
	conn     net.Conn
	stream   bool // the socket is SOCK_STREAM (some syslog daemons): records end in NUL
	lastDial time.Time
	timeout  time.Duration
}

// DialSyslog connects to the syslog socket at path (normally /dev/log),
// datagram first and stream second, as glibc does. Failure is returned so
// the caller can fall back to standard error and say so.
func DialSyslog(path string, facility int) (*SyslogSink, error) {
	s := &SyslogSink{path: path, facility: facility, timeout: time.Second}
	if err := s.dial(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *SyslogSink) dial() error {
	s.lastDial = time.Now()
	c, err := net.Dial("unixgram", s.path)
	if err == nil {
		s.conn, s.stream = c, false
		return nil
	}
	c, err2 := net.Dial("unix", s.path)
	if err2 == nil {
		s.conn, s.stream = c, true
		return nil
	}
	return fmt.Errorf("syslog %s: %w", s.path, err)
}

// Write sends one record; on failure it reconnects once (syslogd may have
// restarted) and retries, but dials at most once a second so a missing
// socket costs one failed dial per second, not one per record. A record
// that cannot be sent within a second is returned as an error for the
// fallback sink.
func (s *SyslogSink) Write(r *Record) error {
	msg := SyslogMessage(r, s.facility)
	err := s.send(msg)
	if err == nil {
		return nil
	}
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if time.Since(s.lastDial) < time.Second {
		return err
	}
	if derr := s.dial(); derr != nil {
		return errors.Join(err, derr)
	}
	return s.send(msg)
}

func (s *SyslogSink) send(msg []byte) error {
	if s.conn == nil {
		return fmt.Errorf("syslog %s: not connected", s.path)
	}
	if s.stream {
		msg = append(msg, 0)
	}
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		return fmt.Errorf("syslog %s: %w", s.path, err)
	}
	if _, err := s.conn.Write(msg); err != nil {
		return fmt.Errorf("syslog %s: %w", s.path, err)
	}
	return nil
}

// Reopen reconnects, for a syslog daemon that was restarted.
func (s *SyslogSink) Reopen() error {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	return s.dial()
}

// Close closes the connection.
func (s *SyslogSink) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	if err != nil {
		return fmt.Errorf("syslog %s: %w", s.path, err)
	}
	return nil
}
