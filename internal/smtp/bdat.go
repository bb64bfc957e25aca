package smtp

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

var bdatSyntaxReply = NewReply(501, "5.5.4", "Syntax: BDAT count [LAST]")

// ParseBDAT parses the tokens of a whole BDAT command line (RFC 3030 §2:
// "BDAT" SP chunk-size [SP end-marker]). chunk-size is 1*DIGIT; a value
// past int64 is refused like bad syntax. The reply on error is 501 5.5.4
// "Syntax: BDAT count [LAST]".
func ParseBDAT(toks []Token) (size int64, last bool, err error) {
	if len(toks) < 2 || len(toks) > 3 || !isDigits(toks[1].Value) {
		return 0, false, syntaxErr(bdatSyntaxReply)
	}
	size, perr := strconv.ParseInt(toks[1].Value, 10, 64)
	if perr != nil {
		return 0, false, syntaxErr(bdatSyntaxReply)
	}
	if len(toks) == 3 {
		if !strings.EqualFold(toks[2].Value, "LAST") {
			return 0, false, syntaxErr(bdatSyntaxReply)
		}
		last = true
	}
	return size, last, nil
}

// ChunkReader collects one message sent with BDAT (RFC 3030 §2): each
// chunk is exactly the announced number of bytes, with no dot-stuffing and
// no terminator, so the session stays in sync whatever the bytes are.
// Content is stored as sent. Under BareNewlineReject a bare LF or bare CR,
// also one split across chunks, refuses the message (postconf(5):
// RFC 3030 §3 requires canonical line endings for text); the refusal and
// the size limit are reported by Finish, after the LAST chunk, so every
// chunk is still read in full. Writes are buffered until Finish. Use a new
// ChunkReader per message.
type ChunkReader struct {
	opts   DataOptions
	sink   dataSink
	lastCR bool // the previous chunk ended in CR
}

// NewChunkReader starts a BDAT message stored into w.
func NewChunkReader(w io.Writer, opts DataOptions) *ChunkReader {
	return &ChunkReader{opts: opts, sink: newSink(w, opts.SizeLimit)}
}

// ReadChunk reads exactly size bytes from r into the message. It returns
// only I/O errors from r (io.ErrUnexpectedEOF when the client stops early);
// after one the session is lost.
func (c *ChunkReader) ReadChunk(r *bufio.Reader, size int64) error {
	for size > 0 {
		n := r.Buffered()
		if n == 0 {
			if _, err := r.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("read BDAT chunk: %w", err)
			}
			n = r.Buffered()
		}
		if int64(n) > size {
			n = int(size)
		}
		p, _ := r.Peek(n)
		c.check(p)
		c.sink.write(p)
		if _, err := r.Discard(n); err != nil {
			return fmt.Errorf("read BDAT chunk: %w", err)
		}
		size -= int64(n)
	}
	return nil
}

func (c *ChunkReader) check(p []byte) {
	if c.opts.BareNewline != BareNewlineReject || len(p) == 0 || c.sink.bare != nil {
		return
	}
	if c.lastCR && p[0] != '\n' {
		c.refuse(true)
	}
	if !c.lastCR && p[0] == '\n' {
		c.refuse(false)
	}
	for i := 1; i < len(p); i++ {
		switch {
		case p[i] == '\n' && p[i-1] != '\r':
			c.refuse(false)
		case p[i-1] == '\r' && p[i] != '\n':
			c.refuse(true)
		}
	}
	c.lastCR = p[len(p)-1] == '\r'
}

func (c *ChunkReader) refuse(cr bool) {
	err := ErrBareLF
	if cr {
		err = ErrBareCR
	}
	c.sink.refuse(&ProtocolError{Err: err, Reply: BareNewlineReply(c.opts.RejectCode, cr)})
}

// Finish ends the message after BDAT LAST and reports, in order of
// precedence, a bare newline (ProtocolError, ErrBareLF/ErrBareCR), a write
// error on the queue file, or ErrTooBig (552 5.3.4).
func (c *ChunkReader) Finish() (DataResult, error) {
	if c.opts.BareNewline == BareNewlineReject && c.lastCR {
		c.refuse(true)
	}
	return c.sink.result()
}

// Failed reports whether the message is already refused (too big or a
// bare newline), so smtpd may answer an intermediate BDAT with the error
// while still consuming the remaining chunks, as RFC 3030 §2 allows.
func (c *ChunkReader) Failed() bool {
	return c.sink.tooBig || c.sink.bare != nil || c.sink.werr != nil
}
