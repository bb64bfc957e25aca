package sendmail

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"

	"moat/internal/cleanup"
	"moat/internal/maildrop"
)

// maxHeaderBlock bounds the header block held in memory to extract
// recipients from (-t) before the envelope can be written; a longer block
// is passed on and only its first part is searched.
const maxHeaderBlock = 1 << 20

// readError is a failure to read standard input.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

// reader turns standard input into the message as stored: lines end in
// CRLF, as Postfix's sendmail reads them (its enqueue()): the first line
// is dropped when it is a mailbox "From " line; the first line also
// decides whether input lines end in CRLF (then every line's CR is
// stripped before LF) or in LF (then a CR before LF is content); without
// -i a line holding only "." ends the message.
type reader struct {
	in      *bufio.Reader
	dotEnds bool
	limit   int64
	n       int64
	first   bool // the first line has been seen
	stripCR bool
	mid     bool // inside a line longer than the buffer
	skip    bool // inside a long first "From " line
	done    bool
}

// next returns one output piece: a whole line with CRLF, or a piece of a
// long line (cont), or io.EOF.
func (m *reader) next() (piece []byte, lineStart, cont bool, err error) {
	for {
		if m.done {
			return nil, false, false, io.EOF
		}
		b, err := m.in.ReadSlice('\n')
		start := !m.mid
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			if !m.first && bytes.HasPrefix(b, []byte("From ")) {
				m.skip = true
			}
			m.mid = true
			m.first = true
			if m.skip {
				continue
			}
			return append([]byte(nil), b...), start, true, nil
		case errors.Is(err, io.EOF):
			m.done = true
			if len(b) == 0 && m.mid && !m.skip {
				// A long last line without LF still ends in CRLF.
				m.mid = false
				return []byte("\r\n"), false, false, nil
			}
			if len(b) == 0 {
				return nil, false, false, io.EOF
			}
		case err != nil:
			return nil, false, false, &readError{err}
		default:
			b = b[:len(b)-1]
		}
		m.mid = false
		if m.skip {
			m.skip = false // the end of a long "From " line
			continue
		}
		if !m.first {
			m.first = true
			if start && bytes.HasPrefix(b, []byte("From ")) {
				continue
			}
			m.stripCR = len(b) > 0 && b[len(b)-1] == '\r'
		}
		if m.stripCR && len(b) > 0 && b[len(b)-1] == '\r' {
			b = b[:len(b)-1]
		}
		if start && m.dotEnds && len(b) == 1 && b[0] == '.' {
			m.done = true
			return nil, false, false, io.EOF
		}
		out := make([]byte, 0, len(b)+2)
		out = append(append(out, b...), '\r', '\n')
		return out, start, false, nil
	}
}

// count enforces message_size_limit on what is read.
func (m *reader) count(n int) error {
	m.n += int64(n)
	if m.limit > 0 && m.n > m.limit {
		return maildrop.ErrTooBig
	}
	return nil
}

// readHeader reads the primary header block (up to maxHeaderBlock bytes)
// and returns it; the line that ended it, if any, is included, so the
// body continues exactly where it stopped.
func (m *reader) readHeader() ([]byte, error) {
	var hdr []byte
	for len(hdr) < maxHeaderBlock {
		p, start, cont, err := m.next()
		if err == io.EOF {
			return hdr, nil
		}
		if err != nil {
			return nil, err
		}
		if err := m.count(len(p)); err != nil {
			return nil, err
		}
		hdr = append(hdr, p...)
		if !start || cont {
			continue
		}
		line := bytes.TrimSuffix(p, []byte("\r\n"))
		if len(line) == 0 {
			return hdr, nil // the blank line ends the headers
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(hdr) == len(p) {
				return hdr, nil // a message cannot start with a continuation
			}
			continue
		}
		if !cleanup.IsHeaderStart(line) {
			return hdr, nil
		}
	}
	return hdr, nil
}

// copyBody copies the rest of the message.
func (m *reader) copyBody(w io.Writer) error {
	for {
		p, _, _, err := m.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := m.count(len(p)); err != nil {
			return err
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
}

// extract returns the recipients of -t: the addresses in the To:, Cc:
// and Bcc: headers of the header block, or, when it has any Resent-To:,
// Resent-Cc: or Resent-Bcc:, in those only (RFC 5322 §3.6.6: a resent
// message goes to the resent recipients). Bcc: itself is removed later,
// by pickup (message_drop_headers), as Postfix's cleanup removes it.
func extract(hdr []byte) []string {
	var plain, resent []string
	for _, h := range logicalHeaders(hdr) {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimRight(name, " \t")) {
		case "to", "cc", "bcc":
			plain = append(plain, Addresses(value)...)
		case "resent-to", "resent-cc", "resent-bcc":
			resent = append(resent, Addresses(value)...)
		}
		if len(plain)+len(resent) > maxAddresses {
			break
		}
	}
	if len(resent) > 0 {
		return resent
	}
	return plain
}

// logicalHeaders splits a header block into headers, folds joined.
func logicalHeaders(hdr []byte) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(string(hdr), "\r\n") {
		if line != "" && (line[0] == ' ' || line[0] == '\t') && cur.Len() > 0 {
			cur.WriteString(" " + strings.TrimLeft(line, " \t"))
			continue
		}
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
		if line == "" || !cleanup.IsHeaderStart([]byte(line)) {
			break
		}
		cur.WriteString(line)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
