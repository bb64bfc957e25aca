package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// DataOptions configures ReadData and ChunkReader.
type DataOptions struct {
	// BareNewline is smtpd_forbid_bare_newline for this client (after
	// smtpd_forbid_bare_newline_exclusions).
	BareNewline BareNewline
	// RejectCode is smtpd_forbid_bare_newline_reject_code (0: 550).
	RejectCode int
	// SizeLimit is message_size_limit; 0 means none. It bounds the bytes
	// written to the queue file; past it nothing more is written.
	SizeLimit int64
}

// DataResult describes a message read by ReadData or ChunkReader.
type DataResult struct {
	// Size counts the message's bytes as stored (dot-unstuffed, CRLF line
	// endings), including any not written because of the size limit.
	Size int64
	// LongestLine is the longest line seen, without CRLF, so smtpd can log
	// or refuse lines past line_length_limit (RFC 5321 §4.5.3.1.6); moat
	// keeps such lines whole where Postfix splits them into records. BDAT
	// content has no lines to track; ChunkReader leaves it 0.
	LongestLine int64
}

var tooBigReply = NewReply(552, "5.3.4", "Message size exceeds fixed limit")

// TooBigReply is Postfix's refusal of an over-size message (RFC 1870 §6.3).
func TooBigReply() Reply { return tooBigReply }

// dataSink applies the size limit and remembers the first write error, so
// the readers keep consuming input after storing has to stop.
type dataSink struct {
	w      *bufio.Writer // batches the many short line writes into few
	limit  int64
	res    DataResult
	werr   error
	tooBig bool
	bare   error // first bare-newline refusal
	stop   bool  // nothing more is stored (refusal or error pending)
}

func newSink(w io.Writer, limit int64) dataSink {
	return dataSink{w: bufio.NewWriterSize(w, 16<<10), limit: limit}
}

func (s *dataSink) write(p []byte) {
	s.res.Size += int64(len(p))
	if s.limit > 0 && s.res.Size > s.limit {
		s.tooBig = true
		s.stop = true
	}
	if s.stop || s.werr != nil || len(p) == 0 {
		return
	}
	if _, err := s.w.Write(p); err != nil {
		s.werr = err
	}
}

func (s *dataSink) line(n int64) {
	if n > s.res.LongestLine {
		s.res.LongestLine = n
	}
}

func (s *dataSink) refuse(e error) {
	if s.bare == nil {
		s.bare = e
		s.stop = true
	}
}

// result orders the outcomes: a bare newline (smtpd disconnects), then a
// write failure (451 from smtpd), then the size limit (552).
func (s *dataSink) result() (DataResult, error) {
	if !s.stop && s.werr == nil {
		s.werr = s.w.Flush()
	}
	switch {
	case s.bare != nil:
		return s.res, s.bare
	case s.werr != nil:
		return s.res, fmt.Errorf("store message: %w", s.werr)
	case s.tooBig:
		return s.res, &ProtocolError{Err: ErrTooBig, Reply: tooBigReply}
	}
	return s.res, nil
}

var crlf = []byte("\r\n")

// ReadData streams a DATA message body (RFC 5321 §4.1.1.4) from r to w,
// removing the transparency dots (RFC 5321 §4.5.2), and stops right after
// the end-of-data line, leaving r at the next command.
//
// The only terminator is CRLF "." CRLF, with the CRLF before it either the
// end of the DATA command or of a line that itself ended in CRLF: "<LF>.<LF>",
// "<LF>.<CR><LF>", "<CR>.<CR>" and "<CR><LF>.<CR>" never end the message, so
// a command smuggled behind them stays message content (the SMTP smuggling
// attacks of December 2023). A line that is exactly "." but is not the
// terminator is kept as ".".
//
// Under BareNewlineReject, a bare LF or bare CR anywhere makes ReadData stop
// storing, keep reading through the real terminator, and return a
// ProtocolError (ErrBareLF or ErrBareCR) with Postfix 3.9's reply, so the
// session stays in sync. Otherwise a bare-LF line ending is stored as CRLF,
// as Postfix does, and a bare CR is stored as is.
//
// Past opts.SizeLimit nothing more is written but reading goes on to the
// terminator; the error is then ErrTooBig (552 5.3.4). A write error on w
// also lets reading go on, and is returned wrapped. Writes to w are
// buffered and flushed before ReadData returns success, so w may be the
// queue file itself; after a refusal, what was not yet flushed is dropped.
// Lines longer than the bufio.Reader's buffer are streamed in pieces, never
// held whole. I/O errors from r (including io.ErrUnexpectedEOF) are
// returned at once.
func ReadData(r *bufio.Reader, w io.Writer, opts DataOptions) (DataResult, error) {
	sink := newSink(w, opts.SizeLimit)
	s := &sink
	reject := opts.BareNewline == BareNewlineReject
	bol := true      // at the start of a line
	prevCRLF := true // the last line ended in CRLF (or DATA just began)
	var lineLen int64
	for {
		chunk, err := r.ReadSlice('\n')
		switch err {
		case nil:
		case bufio.ErrBufferFull:
			// A partial line. A trailing CR may be the first half of
			// CRLF, so leave it for the next read.
			if n := len(chunk); n > 1 && chunk[n-1] == '\r' {
				if uerr := r.UnreadByte(); uerr == nil {
					chunk = chunk[:n-1]
				}
			}
			if bol && chunk[0] == '.' {
				chunk = chunk[1:]
			}
			if reject && bytes.IndexByte(chunk, '\r') >= 0 {
				s.refuse(&ProtocolError{Err: ErrBareCR, Reply: BareNewlineReply(opts.RejectCode, true)})
			}
			s.write(chunk)
			lineLen += int64(len(chunk))
			bol = false
			continue
		default:
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return s.res, fmt.Errorf("read message: %w", err)
		}
		body := chunk[:len(chunk)-1]
		isCRLF := len(body) > 0 && body[len(body)-1] == '\r'
		if isCRLF {
			body = body[:len(body)-1]
		}
		if bol && prevCRLF && isCRLF && len(body) == 1 && body[0] == '.' {
			break
		}
		if bol && len(body) > 1 && body[0] == '.' {
			body = body[1:]
		}
		if reject {
			if !isCRLF {
				s.refuse(&ProtocolError{Err: ErrBareLF, Reply: BareNewlineReply(opts.RejectCode, false)})
			} else if bytes.IndexByte(body, '\r') >= 0 {
				s.refuse(&ProtocolError{Err: ErrBareCR, Reply: BareNewlineReply(opts.RejectCode, true)})
			}
		}
		s.write(body)
		s.write(crlf)
		s.line(lineLen + int64(len(body)))
		lineLen = 0
		bol = true
		prevCRLF = isCRLF
	}
	return s.result()
}
