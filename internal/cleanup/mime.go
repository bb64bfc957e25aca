package cleanup

import (
	"bytes"
	"fmt"
	"strings"
)

// Class says which header block a header belongs to; it decides which of
// the header check tables inspects it (header_checks(5), "FILTERS WHILE
// RECEIVING MAIL").
type Class int

const (
	// Primary is the message's own header block (header_checks, except
	// MIME headers which go to mime_header_checks).
	Primary Class = iota
	// Multipart is the header block of a multipart/* body part: every
	// header in it is inspected by mime_header_checks.
	Multipart
	// Nested is the header block of an attached message/rfc822 message
	// (nested_header_checks, except MIME headers).
	Nested
)

// String gives the names Postfix's header_body_checks test driver prints.
func (c Class) String() string {
	switch c {
	case Primary:
		return "MAIN"
	case Multipart:
		return "MULT"
	case Nested:
		return "NEST"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// MIMEError is a set of MIME structure problems, Postfix's MIME_ERR_*
// flags; strict_mime_encoding_domain and friends decide what a caller does
// with them.
type MIMEError uint

const (
	// ErrNesting: multipart or message/rfc822 nesting exceeded
	// mime_nesting_limit; deeper structure is treated as body text.
	ErrNesting MIMEError = 1 << iota
	// ErrTruncatedHeader: a header exceeded header_size_limit and its
	// excess was dropped.
	ErrTruncatedHeader
	// ErrEncodingDomain: a message/* or multipart/* entity declared a
	// Content-Transfer-Encoding other than 7bit, 8bit or binary (RFC 2045
	// §6.4 forbids encoding composite types).
	ErrEncodingDomain
	// Err8BitHeader: a header holds 8-bit bytes (strict_7bit_headers).
	Err8BitHeader
	// Err8BitBody: a part declared 7bit (or nothing, which means 7bit,
	// RFC 2045 §6.1) holds 8-bit bytes (strict_8bitmime_body).
	Err8BitBody
)

// Text returns the description of each problem, in Postfix's wording.
func (e MIMEError) Text() []string {
	var out []string
	if e&ErrNesting != 0 {
		out = append(out, "MIME nesting exceeds safety limit")
	}
	if e&ErrTruncatedHeader != 0 {
		out = append(out, "message header length exceeds safety limit")
	}
	if e&ErrEncodingDomain != 0 {
		out = append(out, "improper message/* or multipart/* encoding domain")
	}
	if e&Err8BitHeader != 0 {
		out = append(out, "improper use of 8-bit data in message header")
	}
	if e&Err8BitBody != 0 {
		out = append(out, "improper use of 8-bit data in message body")
	}
	return out
}

// Handler receives the parse of one message. Offsets follow Postfix's
// mime_state: a body line's offset counts bytes since the start of its
// part's body (reset at the blank line that ends a header block and at a
// closing boundary); a header's offset counts the first-line bytes of the
// headers after the first one of its block.
type Handler interface {
	// Header gets one logical header; folded lines are joined with "\n"
	// so that a pattern can match the header as a whole.
	Header(class Class, header []byte, offset int64) error
	// HeaderEnd is called once, when the primary header block ends.
	HeaderEnd() error
	// Body gets one body line without its line ending. rec is 'N' for a
	// line or the last piece of a long one, 'L' for a piece of a line
	// longer than the line length limit that continues in the next call.
	Body(rec byte, line []byte, offset int64) error
	// Warn reports a MIME problem as it is found.
	Warn(msg string)
}

// Limits bound what the parser buffers and how deep it follows MIME.
type Limits struct {
	// HeaderSize is header_size_limit: a logical header's excess is dropped.
	HeaderSize int
	// LineLength is line_length_limit: longer body lines are passed on in
	// pieces.
	LineLength int
	// Nesting is mime_nesting_limit.
	Nesting int
}

// DefaultLimits are Postfix 3.7's defaults (postconf -d).
func DefaultLimits() Limits {
	return Limits{HeaderSize: 102400, LineLength: 2048, Nesting: 100}
}

type pstate int

const (
	stHeader pstate = iota
	stBody
)

// Parser splits a message stream into headers and body lines and tracks
// its MIME structure. It is an io.Writer; call Close at the end.
type Parser struct {
	h      Handler
	lim    Limits
	state  pstate
	class  Class
	line   []byte // the current physical line so far (bounded)
	skip   bool   // the rest of the current physical line is dropped
	piece  bool   // the current body line has already been passed on in part
	hdr    []byte // the pending logical header
	hdrOn  bool
	hdrPos int64
	first  bool // no header seen yet in this block
	boff   int64
	bounds []string // open multipart boundaries, innermost last
	nest   int      // message/rfc822 depth
	// what the current header block declared
	ctype, csub, cbound, cenc string
	errs                      MIMEError
	primaryDone               bool
	closed                    bool
}

// NewParser returns a parser that reports to h.
func NewParser(h Handler, lim Limits) *Parser {
	if lim.HeaderSize <= 0 {
		lim.HeaderSize = DefaultLimits().HeaderSize
	}
	if lim.LineLength <= 0 {
		lim.LineLength = DefaultLimits().LineLength
	}
	if lim.Nesting <= 0 {
		lim.Nesting = DefaultLimits().Nesting
	}
	return &Parser{h: h, lim: lim, state: stHeader, class: Primary, first: true}
}

// Errors returns the MIME problems seen so far.
func (p *Parser) Errors() MIMEError { return p.errs }

// Write consumes message bytes; lines end in LF, an optional CR before it
// is dropped.
func (p *Parser) Write(b []byte) (int, error) {
	if p.closed {
		return 0, fmt.Errorf("cleanup: write after close")
	}
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if err := p.add(chunk); err != nil {
			return n - len(b), err
		}
		if i < 0 {
			break
		}
		b = b[i+1:]
		if err := p.endLine(); err != nil {
			return n - len(b), err
		}
	}
	return n, nil
}

// Close ends the message: a last line without LF counts as a line.
func (p *Parser) Close() error {
	if p.closed {
		return nil
	}
	if len(p.line) > 0 || p.skip || p.piece {
		if err := p.endLine(); err != nil {
			return err
		}
	}
	p.closed = true
	if p.state == stHeader {
		if err := p.flushHeader(); err != nil {
			return err
		}
		if !p.primaryDone {
			p.primaryDone = true
			return p.h.HeaderEnd()
		}
	}
	return nil
}

// limit is how much of a physical line is buffered in the current state.
func (p *Parser) limit() int {
	if p.state == stHeader {
		return p.lim.HeaderSize
	}
	return p.lim.LineLength
}

// add buffers part of a physical line, passing on full pieces of long body
// lines so memory stays bounded.
func (p *Parser) add(b []byte) error {
	for len(b) > 0 {
		if p.skip {
			return nil
		}
		room := p.limit() - len(p.line)
		if room <= 0 {
			if p.state == stHeader {
				if IsHeaderStart(p.line) || (p.hdrOn && (p.line[0] == ' ' || p.line[0] == '\t')) {
					// Headers keep their first header_size_limit bytes.
					p.skip = true
					p.errs |= ErrTruncatedHeader
					return nil
				}
				// Not a header: the header block has ended and this long
				// line is body text, which is passed on whole, in pieces.
				if err := p.flushHeader(); err != nil {
					return err
				}
				if err := p.endHeaders(); err != nil {
					return err
				}
				continue
			}
			if err := p.bodyLine('L', p.line); err != nil {
				return err
			}
			p.piece = true
			p.line = p.line[:0]
			continue
		}
		k := min(room, len(b))
		p.line = append(p.line, b[:k]...)
		b = b[k:]
	}
	return nil
}

func (p *Parser) endLine() error {
	line := p.line
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	var err error
	if p.piece {
		err = p.bodyLine('N', line)
	} else if p.state == stHeader {
		err = p.headerLine(line)
	} else {
		err = p.bodyLine('N', line)
	}
	p.line = p.line[:0]
	p.skip, p.piece = false, false
	return err
}

// IsHeaderStart reports whether line begins a header: a label of printable
// characters other than ':', optional blanks, then ':' (RFC 5322 §2.2,
// with the blanks before the colon Postfix also accepts). postcat uses it
// to find the end of a stored message's headers the same way.
func IsHeaderStart(line []byte) bool {
	i := 0
	for i < len(line) && line[i] > ' ' && line[i] < 0x7f && line[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i < len(line) && line[i] == ':'
}

func (p *Parser) headerLine(line []byte) error {
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && p.hdrOn {
		room := p.lim.HeaderSize - len(p.hdr)
		if room <= 0 {
			p.errs |= ErrTruncatedHeader
			return nil
		}
		p.hdr = append(p.hdr, '\n')
		if len(line) > room-1 {
			line = line[:max(room-1, 0)]
			p.errs |= ErrTruncatedHeader
		}
		p.hdr = append(p.hdr, line...)
		return nil
	}
	if IsHeaderStart(line) {
		if err := p.flushHeader(); err != nil {
			return err
		}
		if p.first {
			p.first = false
			p.hdrPos = 0
		} else {
			p.hdrPos += int64(len(line)) + 1
		}
		// Postfix drops blanks between the label and the colon, so that
		// patterns like /^Subject:/ see the canonical form.
		label := bytes.IndexByte(line, ':')
		name := bytes.TrimRight(line[:label], " \t")
		p.hdr = append(append(p.hdr[:0], name...), line[label:]...)
		p.hdrOn = true
		return nil
	}
	// A blank line, or anything else, ends the header block.
	if err := p.flushHeader(); err != nil {
		return err
	}
	if err := p.endHeaders(); err != nil {
		return err
	}
	if len(line) == 0 {
		off := p.boff
		p.boff = 1
		if err := p.h.Body('N', line, off); err != nil {
			return err
		}
		if p.ctype == "message" && p.csub == "rfc822" && p.nestOK() {
			p.nest++
			p.startHeaders(Nested)
		}
		return nil
	}
	return p.bodyLine('N', line)
}

// nestOK enforces mime_nesting_limit.
func (p *Parser) nestOK() bool {
	if len(p.bounds)+p.nest >= p.lim.Nesting {
		p.errs |= ErrNesting
		return false
	}
	return true
}

func (p *Parser) startHeaders(c Class) {
	p.state = stHeader
	p.class = c
	p.first = true
	p.hdrPos = 0
	p.ctype, p.csub, p.cbound, p.cenc = "", "", "", ""
}

// endHeaders acts on what the block declared and switches to its body.
func (p *Parser) endHeaders() error {
	if p.class == Primary && !p.primaryDone {
		p.primaryDone = true
		if err := p.h.HeaderEnd(); err != nil {
			return err
		}
	}
	p.state = stBody
	p.boff = 0
	composite := p.ctype == "message" || p.ctype == "multipart"
	if composite && p.cenc != "" && p.cenc != "7bit" && p.cenc != "8bit" && p.cenc != "binary" {
		p.errs |= ErrEncodingDomain
		p.h.Warn("invalid message/* or multipart/* encoding domain: " + p.cenc)
	}
	if p.ctype == "multipart" && p.cbound != "" && p.nestOK() {
		p.bounds = append(p.bounds, p.cbound)
	}
	return nil
}

func (p *Parser) flushHeader() error {
	if !p.hdrOn {
		return nil
	}
	p.hdrOn = false
	if has8Bit(p.hdr) {
		p.errs |= Err8BitHeader
	}
	p.noteMIME(p.hdr)
	return p.h.Header(p.class, p.hdr, p.hdrPos)
}

// noteMIME records Content-Type and Content-Transfer-Encoding (RFC 2045
// §5, §6) of the current block.
func (p *Parser) noteMIME(h []byte) {
	name, value, ok := splitHeader(string(h))
	if !ok {
		return
	}
	switch strings.ToLower(name) {
	case "content-type":
		p.ctype, p.csub, p.cbound = parseContentType(value)
	case "content-transfer-encoding":
		toks := tokenize(value)
		if len(toks) > 0 && toks[0].kind == tokAtom {
			p.cenc = strings.ToLower(toks[0].text)
		}
	}
}

// bodyLine passes on a body line (or piece), recognising multipart
// boundaries (RFC 2046 §5.1.1) at the start of a line.
func (p *Parser) bodyLine(rec byte, line []byte) error {
	if !p.piece && len(line) >= 2 && line[0] == '-' && line[1] == '-' && len(p.bounds) > 0 {
		rest := line[2:]
		for i := len(p.bounds) - 1; i >= 0; i-- {
			b := p.bounds[i]
			if !bytes.HasPrefix(rest, []byte(b)) {
				continue
			}
			// A boundary of an outer part also ends every inner one.
			p.bounds = p.bounds[:i+1]
			p.nest = 0
			if bytes.HasPrefix(rest[len(b):], []byte("--")) {
				p.bounds = p.bounds[:i]
				p.boff = 0
				return p.emitBody(rec, line)
			}
			if err := p.emitBody(rec, line); err != nil {
				return err
			}
			if rec == 'N' {
				p.startHeaders(Multipart)
			}
			return nil
		}
	}
	return p.emitBody(rec, line)
}

func (p *Parser) emitBody(rec byte, line []byte) error {
	if (p.cenc == "" || p.cenc == "7bit") && has8Bit(line) {
		p.errs |= Err8BitBody
	}
	off := p.boff
	if rec == 'N' {
		p.boff += int64(len(line)) + 1
	} else {
		p.boff += int64(len(line))
	}
	return p.h.Body(rec, line, off)
}

// splitHeader splits "Name: value" (blanks before the colon allowed).
func splitHeader(h string) (name, value string, ok bool) {
	i := strings.IndexByte(h, ':')
	if i <= 0 {
		return "", "", false
	}
	return strings.TrimRight(h[:i], " \t"), h[i+1:], true
}

func has8Bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
