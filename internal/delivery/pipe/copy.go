package pipe

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"time"
)

// copyOptions say how the message is written to the command, Postfix's
// mail_copy() flags.
type copyOptions struct {
	flags int
	eol   string
	// sender is the envelope sender after null_sender replacement ("" is
	// still possible: null_sender= empty).
	sender string
	// orig and rcpt feed X-Original-To: (O) and Delivered-To: (D).
	orig, rcpt string
	now        time.Time
}

// prefix is what mail_copy() writes before the message, in its order:
// From_ line, Return-Path:, X-Original-To:, Delivered-To:.
func (o copyOptions) prefix() string {
	var b strings.Builder
	if o.flags&flagFrom != 0 {
		from := "MAILER-DAEMON"
		if o.sender != "" {
			from = quoteLocal(o.sender)
		}
		// "From %s  %.24s": two spaces, then asctime(3) in local time, as
		// Postfix writes it.
		b.WriteString("From " + headerSafe(from) + "  " + o.now.Local().Format("Mon Jan _2 15:04:05 2006") + o.eol)
	}
	if o.flags&flagReturnPath != 0 {
		rp := ""
		if o.sender != "" {
			rp = quoteLocal(o.sender)
		}
		b.WriteString("Return-Path: <" + headerSafe(rp) + ">" + o.eol)
	}
	if o.flags&flagOrigRcpt != 0 && o.orig != "" {
		b.WriteString("X-Original-To: " + headerSafe(quoteLocal(o.orig)) + o.eol)
	}
	if o.flags&flagDelivered != 0 {
		b.WriteString("Delivered-To: " + headerSafe(quoteLocal(o.rcpt)) + o.eol)
	}
	return b.String()
}

// headerSafe keeps an address from ending the line it is written on: CR,
// LF and NUL cannot be in an SMTP envelope address, and if one ever is it
// becomes '?'.
func headerSafe(s string) string {
	if !strings.ContainsAny(s, "\r\n\x00") {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c == '\r' || c == '\n' || c == 0 {
			b[i] = '?'
		}
	}
	return string(b)
}

// contentReader turns the queued message (lines ending in CRLF) into what
// the command reads: the prefix headers, each line ending in eol, "." and
// ">From " quoting at line starts (flags . and >), a line end after an
// unterminated last line, and a blank line at the end (B). It reads as the
// command reads, so a command that stops reading early costs nothing.
type contentReader struct {
	src   *bufio.Reader
	o     copyOptions
	out   []byte // pending output; out[pos:] is not read yet
	pos   int
	start bool // at the start of a line
	cr    bool // a CR held back at a buffer boundary
	done  bool
	err   error // the content's own read error, kept for the verdict
}

func newContentReader(src io.Reader, o copyOptions) *contentReader {
	return &contentReader{src: bufio.NewReaderSize(src, 64<<10), o: o, out: []byte(o.prefix()), start: true}
}

// Read implements io.Reader.
func (c *contentReader) Read(p []byte) (int, error) {
	for c.pos == len(c.out) {
		c.out, c.pos = c.out[:0], 0
		if c.done {
			if c.err != nil {
				return 0, c.err
			}
			return 0, io.EOF
		}
		c.fill()
	}
	n := copy(p, c.out[c.pos:])
	c.pos += n
	return n, nil
}

func (c *contentReader) fill() {
	chunk, err := c.src.ReadSlice('\n')
	if c.cr {
		c.cr = false
		if len(chunk) > 0 && chunk[0] == '\n' {
			c.out = append(c.out, c.o.eol...)
			c.start = true
			chunk = chunk[1:]
		} else {
			c.out = append(c.out, '\r')
		}
	}
	if len(chunk) > 0 {
		complete := chunk[len(chunk)-1] == '\n'
		body := chunk
		if complete {
			body = bytes.TrimSuffix(body[:len(body)-1], []byte{'\r'})
		} else if errors.Is(err, bufio.ErrBufferFull) && body[len(body)-1] == '\r' {
			body = body[:len(body)-1]
			c.cr = true
		}
		if c.start {
			if c.o.flags&flagQuoteFrom != 0 && bytes.HasPrefix(body, []byte("From ")) {
				c.out = append(c.out, '>')
			}
			if c.o.flags&flagDot != 0 && len(body) > 0 && body[0] == '.' {
				c.out = append(c.out, '.')
			}
		}
		c.out = append(c.out, body...)
		if complete {
			c.out = append(c.out, c.o.eol...)
		}
		// A held-back CR leaves the line open even if body is empty.
		c.start = complete
	}
	switch {
	case err == nil, errors.Is(err, bufio.ErrBufferFull):
	case err == io.EOF:
		if c.cr {
			c.out = append(c.out, '\r')
			c.cr = false
		}
		if !c.start {
			c.out = append(c.out, c.o.eol...)
			c.start = true
		}
		if c.o.flags&flagBlank != 0 {
			c.out = append(c.out, c.o.eol...)
		}
		c.done = true
	default:
		c.err = err
		c.done = true
	}
}

// deliveredTo reports whether the message's header section already has a
// "Delivered-To:" for addr, compared without regard to case (pipe(8),
// flag D: "the message is returned as undeliverable"). It reads only the
// header section.
func deliveredTo(r io.Reader, addr string) (bool, error) {
	want := []string{strings.ToLower(addr), strings.ToLower(quoteLocal(addr))}
	br := bufio.NewReaderSize(r, 16<<10)
	var cur []byte
	check := func() bool {
		name, value, ok := bytes.Cut(cur, []byte{':'})
		if !ok || !bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("Delivered-To")) {
			return false
		}
		v := strings.ToLower(string(bytes.TrimSpace(value)))
		return v == want[0] || v == want[1]
	}
	for {
		line, err := br.ReadSlice('\n')
		full := len(line) > 0 && line[len(line)-1] == '\n'
		text := bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && cur != nil:
			cur = append(cur, text...)
		default:
			if cur != nil && check() {
				return true, nil
			}
			cur = nil
			if full && len(text) == 0 {
				return false, nil // end of the header section
			}
			cur = append(cur, text...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			// A header line longer than the buffer: not an address
			// header worth comparing; drop the rest of it.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			cur = []byte{}
		}
		if err == io.EOF {
			return cur != nil && check(), nil
		}
		if err != nil {
			return false, err
		}
	}
}
