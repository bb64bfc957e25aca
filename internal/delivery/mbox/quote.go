package mbox

import (
	"io"
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
