// Package smtp is the SMTP wire level shared by moat's server (smtpd) and,
// later, its client: command lines with RFC 5321 length limits and the
// bare-newline policy that defeats SMTP smuggling, Postfix's command
// tokenizer, MAIL/RCPT address and ESMTP parameter parsing, replies with
// enhanced status codes, and the DATA and BDAT readers that stream a
// message to the queue file without holding it in memory.
//
// Every protocol refusal is returned as an error that carries the exact
// reply Postfix sends (see ProtocolError), so smtpd writes what it gets.
package smtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Reply is one SMTP reply (RFC 5321 §4.2): a three-digit code, an optional
// enhanced status code (RFC 2034 §3, RFC 3463) and one or more text lines.
// Postfix repeats the enhanced code on every line of a multi-line reply, and
// so does Format.
type Reply struct {
	Code     int
	Enhanced string // "5.5.2", or "" when the reply has none
	Lines    []string
}

// NewReply builds a one-line reply, the common case in smtpd.
func NewReply(code int, enhanced, text string) Reply {
	return Reply{Code: code, Enhanced: enhanced, Lines: []string{text}}
}

// Text is the reply's text joined with newlines, without the codes; it is
// what logs quote after the code.
func (r Reply) Text() string { return strings.Join(r.Lines, "\n") }

// String is the reply's first line as sent, without CRLF, for logs such as
// "NOQUEUE: reject: RCPT from ...: 550 5.1.1 ...".
func (r Reply) String() string {
	return r.line(0, ' ')
}

// Error lets a Reply travel as an error; its text is the reply's first line.
func (r Reply) Error() string { return r.String() }

func (r Reply) line(i int, sep byte) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	b.WriteByte(sep)
	if r.Enhanced != "" {
		b.WriteString(r.Enhanced)
		b.WriteByte(' ')
	}
	if i < len(r.Lines) {
		writeSafe(&b, r.Lines[i])
	}
	return b.String()
}

// writeSafe copies reply text, replacing control characters with '?': a
// reply may quote client input ("Unsupported option: X"), and a CR or LF
// in it would forge reply lines on the wire or lines in the log.
func writeSafe(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' && c != '\t' || c == 0x7f {
			c = '?'
		}
		b.WriteByte(c)
	}
}

// Format renders the reply for the wire: "code-text" on every line but the
// last, "code text" on the last (RFC 5321 §4.2.1), each ending in CRLF.
func (r Reply) Format() string {
	n := len(r.Lines)
	if n == 0 {
		n = 1
	}
	var b strings.Builder
	for i := 0; i < n; i++ {
		sep := byte('-')
		if i == n-1 {
			sep = ' '
		}
		b.WriteString(r.line(i, sep))
		b.WriteString("\r\n")
	}
	return b.String()
}

// WriteTo writes the formatted reply; with a bufio.Writer the caller
// decides when to flush, which is how PIPELINING batches replies (RFC 2920
// §3.2).
func (r Reply) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, r.Format())
	return int64(n), err
}

// Positive reports a 2xx or 3xx reply (RFC 5321 §4.2.1).
func (r Reply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// Temporary reports a 4xx reply, which the client retries later.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports a 5xx reply.
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// ErrBadReply reports a server reply that breaks RFC 5321 §4.2 syntax.
var ErrBadReply = errors.New("malformed SMTP reply")

// ReadReply reads one possibly multi-line reply, as an SMTP client does
// (RFC 5321 §4.2.1). Each line may be at most limit bytes (0: 4096); the
// enhanced code is recognised (RFC 2034 §3) only when every line carries
// the same one and its class matches the reply code's first digit. A line
// ending in a bare LF is accepted: servers in the wild send them and a
// client gains nothing by refusing.
func ReadReply(r *bufio.Reader, limit int) (Reply, error) {
	if limit <= 0 {
		limit = 4096
	}
	var rep Reply
	var texts []string
	for {
		line, err := readRawLine(r, limit)
		if err != nil {
			return Reply{}, fmt.Errorf("read reply: %w", err)
		}
		if len(line) < 3 || !isDigits(line[:3]) || line[0] < '1' || line[0] > '5' {
			return Reply{}, fmt.Errorf("%w: %q", ErrBadReply, line)
		}
		code, _ := strconv.Atoi(line[:3])
		if rep.Code != 0 && code != rep.Code {
			return Reply{}, fmt.Errorf("%w: code changed within reply: %q", ErrBadReply, line)
		}
		rep.Code = code
		last := true
		text := ""
		if len(line) > 3 {
			switch line[3] {
			case '-':
				last = false
			case ' ':
			default:
				return Reply{}, fmt.Errorf("%w: %q", ErrBadReply, line)
			}
			text = line[4:]
		}
		texts = append(texts, text)
		if last {
			break
		}
	}
	rep.Enhanced = commonEnhanced(rep.Code, texts)
	for _, t := range texts {
		if rep.Enhanced != "" {
			t = strings.TrimPrefix(t[len(rep.Enhanced):], " ")
		}
		rep.Lines = append(rep.Lines, t)
	}
	return rep, nil
}

// readRawLine reads one line for ReadReply, dropping CRLF or LF.
func readRawLine(r *bufio.Reader, limit int) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(b)+len(chunk) > limit+2 {
			return "", fmt.Errorf("%w: line longer than %d bytes", ErrBadReply, limit)
		}
		b = append(b, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		b = b[:len(b)-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
		return string(b), nil
	}
}

func commonEnhanced(code int, texts []string) string {
	enh := ""
	for i, t := range texts {
		e := leadingEnhanced(t)
		if e == "" || int(e[0]-'0') != code/100 || (i > 0 && e != enh) {
			return ""
		}
		enh = e
	}
	return enh
}

// leadingEnhanced returns the "class.subject.detail" prefix of text
// (RFC 3463 §2: class 2, 4 or 5; subject and detail 1-3 digits), followed by
// a space or the end of text.
func leadingEnhanced(text string) string {
	end := strings.IndexByte(text, ' ')
	if end < 0 {
		end = len(text)
	}
	cand := text[:end]
	parts := strings.Split(cand, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return ""
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || !isDigits(p) {
			return ""
		}
	}
	return cand
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ProtocolError is a refusal found while reading or parsing client input.
// Err is one of the package's sentinel errors (for errors.Is and for the
// log line); Reply is what Postfix answers.
type ProtocolError struct {
	Err   error
	Reply Reply
}

// Error returns the reply's first line; smtpd logs the sentinel separately.
func (e *ProtocolError) Error() string { return e.Reply.String() }

// Unwrap exposes the sentinel to errors.Is.
func (e *ProtocolError) Unwrap() error { return e.Err }

// ReplyOf returns the reply carried by err (a *ProtocolError or a Reply),
// and false for I/O and other errors, after which smtpd drops the session.
func ReplyOf(err error) (Reply, bool) {
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return pe.Reply, true
	}
	var r Reply
	if errors.As(err, &r) {
		return r, true
	}
	return Reply{}, false
}
