package postmap

import (
	"io"
	"strings"

	"moat/internal/cleanup"
)

// message is the state of the -h/-b/-m message reader: which lines are
// headers (header_checks keys) and which are body lines (body_checks keys).
type message struct {
	o  *opts
	fn func(string) error
	// inHeaders is set while reading a header block; hdr is the logical
	// header being collected (have says whether there is one).
	inHeaders, have bool
	hdr             string
	// nested is set once the primary header block is over: only that
	// block, when a non-header line ends it, gets an empty body key in
	// place of the missing separator line.
	nested bool
	// ctype and boundary are the Content-Type and boundary of the
	// current header block (-m only); digest marks a multipart/digest
	// parent, whose parts default to message/rfc822.
	ctype, boundary string
	digest          bool
	// boundaries is the stack of open multipart boundaries, innermost last.
	boundaries []string
	digests    []bool
}

// messageKeys reads stdin as an RFC 5322 message for -h and -b: each
// logical header (continuation lines joined with their newlines) is a
// header key; the end of a header block is one empty body key (the
// separator line, or one supplied before a non-header line), and the
// lines after it are body keys. This is what header_checks and body_checks
// see. With -m, MIME structure is followed as Postfix's cleanup does: the
// headers of each part and of attached messages are header keys, and
// boundary lines are body keys.
func (o *opts) messageKeys(r io.Reader, fn func(string) error) error {
	m := &message{o: o, fn: fn, inHeaders: true}
	return eachLine(r, m.line, func() error { return m.flushHeader() })
}

func (m *message) emitHeader(h string) error {
	if m.o.headers {
		return m.fn(h)
	}
	return nil
}

func (m *message) emitBody(l string) error {
	if m.o.body {
		return m.fn(l)
	}
	return nil
}

// flushHeader hands over the header being collected, noting the
// Content-Type for -m.
func (m *message) flushHeader() error {
	if !m.have {
		return nil
	}
	m.have = false
	if m.o.mime {
		name, value, _ := strings.Cut(m.hdr, ":")
		if strings.EqualFold(strings.TrimRight(name, " \t"), "content-type") {
			m.ctype, m.boundary = parseContentType(value)
		}
	}
	return m.emitHeader(m.hdr)
}

func (m *message) line(line string) error {
	if m.inHeaders {
		if m.have && line != "" && (line[0] == ' ' || line[0] == '\t') {
			m.hdr += "\n" + line
			return nil
		}
		if err := m.flushHeader(); err != nil {
			return err
		}
		if cleanup.IsHeaderStart([]byte(line)) {
			m.hdr, m.have = line, true
			return nil
		}
		if err := m.endHeaders(line == "" || !m.nested); err != nil {
			return err
		}
		if line == "" {
			return nil
		}
		if m.inHeaders {
			// An attached message began with a non-header line: its
			// (empty) header block ends here too.
			return m.line(line)
		}
	}
	if m.o.mime {
		for i := len(m.boundaries) - 1; i >= 0; i-- {
			b := m.boundaries[i]
			if !strings.HasPrefix(line, "--"+b) {
				continue
			}
			digest := m.digests[i]
			if strings.HasPrefix(line[2+len(b):], "--") {
				m.boundaries, m.digests = m.boundaries[:i], m.digests[:i]
			} else {
				m.boundaries, m.digests = m.boundaries[:i+1], m.digests[:i+1]
				m.startHeaders(digest)
			}
			return m.emitBody(line)
		}
	}
	return m.emitBody(line)
}

// startHeaders begins the header block of a MIME part.
func (m *message) startHeaders(digest bool) {
	m.inHeaders, m.have, m.ctype, m.boundary, m.digest = true, false, "", "", digest
	m.nested = true
}

// endHeaders ends a header block: an empty body key (when separator says
// there is one), then either the part's body, a multipart's preamble, or
// an attached message's headers.
func (m *message) endHeaders(separator bool) error {
	m.inHeaders = false
	if separator {
		if err := m.emitBody(""); err != nil {
			return err
		}
	}
	if !m.o.mime {
		return nil
	}
	ctype := m.ctype
	if ctype == "" && m.digest {
		ctype = "message/rfc822"
	}
	switch {
	case strings.HasPrefix(ctype, "multipart/") && m.boundary != "":
		m.boundaries = append(m.boundaries, m.boundary)
		m.digests = append(m.digests, ctype == "multipart/digest")
	case ctype == "message/rfc822" || ctype == "message/global":
		m.startHeaders(false)
	}
	return nil
}

// parseContentType returns the lowercased type/subtype and the boundary
// parameter of a Content-Type value (RFC 2045 section 5.1).
func parseContentType(v string) (ctype, boundary string) {
	v = strings.ReplaceAll(v, "\n", "")
	parts := strings.Split(v, ";")
	ctype = strings.ToLower(strings.TrimSpace(parts[0]))
	for _, p := range parts[1:] {
		name, val, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "boundary") {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' {
			if j := strings.IndexByte(val[1:], '"'); j >= 0 {
				val = val[1 : 1+j]
			}
		}
		boundary = val
	}
	return ctype, boundary
}
