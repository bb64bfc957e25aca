package mbox

import (
	"io"
	"strings"
)

// quoter is the mbox body writer: CRLF becomes LF (the queue stores CRLF,
// a UNIX mailbox holds LF), a line that begins with "From " gets a '>' in
// front so readers never take it for a message separator (mail_copy(3)
// MAIL_COPY_QUOTE), and finish() ends the message with a newline and a
// blank line (MAIL_COPY_BLANK). It streams: a possible "From " is held
// back only for its first five bytes.
type quoter struct {
	w    io.Writer
	bol  bool   // at the start of a line
	held []byte // a line's first bytes while they still match "From "
	cr   bool   // a CR waiting to see whether LF follows
	out  []byte
	err  error
}

const fromPrefix = "From "

func newQuoter(w io.Writer) *quoter {
	return &quoter{w: w, bol: true, out: make([]byte, 0, copyBufSize)}
}

// raw writes s unchanged (the From_ line and headers), leaving the
// quoter at the start of a line when s ends with one.
func (q *quoter) raw(s string) {
	if s == "" {
		return
	}
	q.out = append(q.out, s...)
	q.bol = s[len(s)-1] == '\n'
	q.flush()
}

// write transforms one chunk of the message.
func (q *quoter) write(p []byte) {
	for _, c := range p {
		if q.cr {
			q.cr = false
			if c == '\n' {
				q.emit('\n')
				continue
			}
			q.emit('\r') // a bare CR stays, as mail_copy() keeps it
		}
		if c == '\r' {
			q.release()
			q.cr = true
			continue
		}
		if q.bol || len(q.held) > 0 {
			if len(q.held) < len(fromPrefix) && c == fromPrefix[len(q.held)] {
				q.held = append(q.held, c)
				q.bol = false
				if len(q.held) == len(fromPrefix) {
					q.out = append(q.out, '>')
					q.release()
				}
				continue
			}
			q.release()
		}
		q.emit(c)
	}
	q.flush()
}

// emit appends one output byte and tracks line starts.
func (q *quoter) emit(c byte) {
	q.out = append(q.out, c)
	q.bol = c == '\n'
}

// release writes the held prefix bytes as they are.
func (q *quoter) release() {
	for _, c := range q.held {
		q.emit(c)
	}
	q.held = q.held[:0]
}

// finish flushes what is held and ends the message: a newline if the last
// line had none, then the blank line that separates it from the next.
func (q *quoter) finish() {
	if q.cr {
		q.cr = false
		q.emit('\r')
	}
	q.release()
	if !q.bol {
		q.emit('\n')
	}
	q.emit('\n')
	q.flush()
}

func (q *quoter) flush() {
	if len(q.out) == 0 {
		return
	}
	if q.err == nil {
		_, q.err = q.w.Write(q.out)
	}
	q.out = q.out[:0]
}

// quoteAddr renders an internal-form address for the From_ line and the
// delivery headers, quoting a local part that is not an RFC 5322
// dot-atom (section 3.4.1), as Postfix's quote_822_local() does. CR, LF
// and NUL become '?' so an address can never start a line of its own. A
// quoted local part keeps its spaces inside the quotes in the From_ line,
// as Postfix writes it.
func quoteAddr(addr string) string {
	local, domain := addr, ""
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local, domain = addr[:at], addr[at:]
	}
	if local != "" && !isDotAtom(local) {
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(local); i++ {
			if c := local[i]; c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(local[i])
		}
		b.WriteByte('"')
		local = b.String()
	}
	out := []byte(local + domain)
	for i, c := range out {
		if c == '\r' || c == '\n' || c == 0 {
			out[i] = '?'
		}
	}
	return string(out)
}

// isDotAtom reports whether s is atext runs separated by single dots
// (RFC 5322 section 3.2.3); 8-bit bytes count as atext (RFC 6532).
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80, c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0:
		default:
			return false
		}
	}
	return true
}
