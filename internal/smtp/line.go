package smtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// BareNewline is the smtpd_forbid_bare_newline policy (postconf(5)).
type BareNewline int

const (
	// BareNewlineNo ("no") accepts a line ending in a bare LF as if it
	// ended in CRLF. Unlike Postfix's "no", moat still ends DATA only at
	// CRLF.CRLF: letting "<LF>.<LF>" end DATA is the smuggling hole itself.
	BareNewlineNo BareNewline = iota
	// BareNewlineNormalize ("normalize", "yes") accepts bare-LF line
	// endings as CRLF; DATA ends only at CRLF.CRLF.
	BareNewlineNormalize
	// BareNewlineReject ("reject") refuses any command or message with a
	// bare LF, and (moat, stricter than Postfix) a bare CR, with
	// smtpd_forbid_bare_newline_reject_code.
	BareNewlineReject
)

// ParseBareNewline reads a smtpd_forbid_bare_newline value; case does not
// matter (postconf(5)), and "yes" is the compatibility alias for normalize.
func ParseBareNewline(v string) (BareNewline, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "no":
		return BareNewlineNo, nil
	case "normalize", "yes":
		return BareNewlineNormalize, nil
	case "reject":
		return BareNewlineReject, nil
	}
	return 0, fmt.Errorf("smtpd_forbid_bare_newline: invalid value %q (want normalize, yes, reject or no)", v)
}

// Sentinel errors inside ProtocolError, for errors.Is and log lines.
var (
	// ErrBareLF: a line ended in LF without CR (smuggling, RFC 5321 §2.3.8).
	ErrBareLF = errors.New("bare <LF> received")
	// ErrBareCR: a CR not followed by LF (RFC 5321 §2.3.8 forbids it too).
	ErrBareCR = errors.New("bare <CR> received")
	// ErrLineTooLong: a command line over the limit (RFC 5321 §4.5.3.1.4).
	ErrLineTooLong = errors.New("command line too long")
	// ErrTooBig: message content over message_size_limit (RFC 1870 §6.3).
	ErrTooBig = errors.New("message size exceeds fixed limit")
	// ErrSyntax: a command or parameter Postfix refuses as bad syntax.
	ErrSyntax = errors.New("bad syntax")
)

// DefaultBareNewlineCode is smtpd_forbid_bare_newline_reject_code's default.
const DefaultBareNewlineCode = 550

// BareNewlineReply is Postfix 3.9's refusal for a bare LF, "550 5.5.2
// Error: bare <LF> received", with code from
// smtpd_forbid_bare_newline_reject_code (0 means 550); cr selects moat's
// wording for a bare CR.
func BareNewlineReply(code int, cr bool) Reply {
	if code == 0 {
		code = DefaultBareNewlineCode
	}
	what := "<LF>"
	if cr {
		what = "<CR>"
	}
	return NewReply(code, "5.5.2", "Error: bare "+what+" received")
}

// LineTooLongReply is moat's answer to an over-long command line: RFC 5321
// §4.2.2 names 500 for "command line too long". Postfix instead truncates
// the line at line_length_limit, logs "request longer than", and executes
// the truncated command; moat refuses rather than act on a cut-off command.
var lineTooLongReply = NewReply(500, "5.5.2", "Error: line too long")

// LineTooLongReply returns the reply for ErrLineTooLong.
func LineTooLongReply() Reply { return lineTooLongReply }

// ReadCommand reads one command line (RFC 5321 §2.3.8, §4.1.1) and returns
// it without its line ending. limit is the longest line accepted, not
// counting CRLF (smtpd passes line_length_limit, 2048 by default, which is
// what Postfix's smtpd reads commands up to; RFC 5321 §4.5.3.1.4 requires at
// least 512 including CRLF); 0 means 2048.
//
// An over-long line is consumed through its LF without being buffered and
// reported as ErrLineTooLong, so the next read starts at the next command.
// Under BareNewlineReject a bare LF ending or a bare CR inside the line is
// reported, after consuming the line, as ErrBareLF or ErrBareCR (Postfix
// then disconnects). Otherwise a bare LF ends the line as CRLF would, and a
// bare CR stays in the text, as in Postfix.
//
// ReadCommand never sets deadlines: the caller sets smtpd_timeout on the
// connection. At end of input it returns io.EOF before any byte, else
// io.ErrUnexpectedEOF.
func ReadCommand(r *bufio.Reader, limit int, policy BareNewline, rejectCode int) (string, error) {
	if limit <= 0 {
		limit = 2048
	}
	var b []byte
	tooLong := false
	started := false
	for {
		chunk, err := r.ReadSlice('\n')
		if len(chunk) > 0 {
			started = true
		}
		if !tooLong {
			if len(b)+len(chunk) > limit+2 {
				tooLong = true
				b = nil
			} else {
				b = append(b, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && started {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		break
	}
	if tooLong {
		return "", &ProtocolError{Err: ErrLineTooLong, Reply: lineTooLongReply}
	}
	b = b[:len(b)-1]
	crlf := len(b) > 0 && b[len(b)-1] == '\r'
	if crlf {
		b = b[:len(b)-1]
	}
	if len(b) > limit {
		return "", &ProtocolError{Err: ErrLineTooLong, Reply: lineTooLongReply}
	}
	if policy == BareNewlineReject {
		if !crlf {
			return "", &ProtocolError{Err: ErrBareLF, Reply: BareNewlineReply(rejectCode, false)}
		}
		for _, c := range b {
			if c == '\r' {
				return "", &ProtocolError{Err: ErrBareCR, Reply: BareNewlineReply(rejectCode, true)}
			}
		}
	}
	return string(b), nil
}
