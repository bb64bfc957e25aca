package smtp

import (
	"bytes"
	"io"
	"strconv"
	"strings"
)

// This file is the client side of the wire (the lmtp(8) agent today, the
// smtp(8) client later): reading a server's EHLO/LHLO keywords, sending a
// message body with dot-stuffing, and rendering replies as Postfix logs
// them. ReadReply (reply.go) reads the replies.

// Extensions is what a server offered in its EHLO (RFC 5321 §4.1.1.1) or
// LHLO (RFC 2033 §4.1) reply: the keywords in upper case, each with its
// parameters.
type Extensions struct {
	// Name is the first word of the reply's first line, the name the
	// server gave itself.
	Name string
	// Keywords maps an upper-case keyword ("PIPELINING", "SIZE") to its
	// parameter text ("" when none; "10240000" for SIZE).
	Keywords map[string]string
}

// ParseEHLO reads the keywords of an EHLO or LHLO reply: every line after
// the first is "keyword [params]". As Postfix's smtp_helo() does, it also
// accepts "keyword=params" (an old AUTH draft that Microsoft implemented)
// and ignores lines that are not keywords, so a server's odd line never
// fails the session.
func ParseEHLO(r Reply) Extensions {
	e := Extensions{Keywords: make(map[string]string)}
	for i, line := range r.Lines {
		line = strings.TrimSpace(line)
		if i == 0 {
			e.Name, _, _ = strings.Cut(line, " ")
			continue
		}
		kw, params := line, ""
		if j := strings.IndexAny(line, " \t="); j >= 0 {
			kw, params = line[:j], strings.TrimSpace(line[j+1:])
		}
		if !isKeyword(kw) {
			continue
		}
		e.Keywords[strings.ToUpper(kw)] = params
	}
	return e
}

// isKeyword is RFC 5321 §4.1.1.1's ehlo-keyword: a letter or digit, then
// letters, digits and hyphens.
func isKeyword(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-') {
			return false
		}
	}
	return true
}

// Has reports whether the server offered keyword (any case).
func (e Extensions) Has(keyword string) bool {
	_, ok := e.Keywords[strings.ToUpper(keyword)]
	return ok
}

// SizeLimit is the SIZE extension's limit (RFC 1870 §4): ok is false when
// SIZE was not offered, and the limit is 0 when the server gave none or a
// value that is not a number (Postfix warns "bad EHLO SIZE limit" and
// ignores it).
func (e Extensions) SizeLimit() (limit int64, ok bool) {
	v, ok := e.Keywords["SIZE"]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, true
	}
	return n, true
}

// LogText renders the reply as Postfix quotes it in delivery logs
// ("host H[A] said: TEXT"): every line as it came, code and enhanced code
// included, joined with spaces (Postfix's translit(resp->str, "\n", " ")).
func (r Reply) LogText() string {
	n := len(r.Lines)
	if n == 0 {
		n = 1
	}
	parts := make([]string, n)
	for i := range parts {
		sep := byte('-')
		if i == n-1 {
			sep = ' '
		}
		parts[i] = r.line(i, sep)
	}
	return strings.Join(parts, " ")
}

// DSN is the reply's enhanced status code, or the one Postfix's
// smtp_chat_resp() derives when the server sent none: "2.0.0", "4.0.0" or
// "5.0.0" from the reply code's class.
func (r Reply) DSN() string {
	if r.Enhanced != "" {
		return r.Enhanced
	}
	switch r.Code / 100 {
	case 2:
		return "2.0.0"
	case 4:
		return "4.0.0"
	default:
		return "5.0.0"
	}
}

// DotWriter sends a message body after DATA (RFC 5321 §4.5.2): a line that
// begins with "." gets a second one, a bare LF becomes CRLF (the wire
// allows no other line end, RFC 5321 §2.3.8), and Close ends the body
// with CRLF "." CRLF, adding the missing CRLF before it when the content
// does not end with a line end. A bare CR is content and passes as is.
// It writes to w in pieces as large as the caller's writes; wrap w in a
// bufio.Writer and flush after Close.
type DotWriter struct {
	// LineLimit, when positive, breaks longer lines by inserting
	// CRLF SPACE, as Postfix's smtp_line_length_limit and
	// lmtp_line_length_limit (998: RFC 5322 §2.1.1) do "to minimize the
	// damage to MIME formatted mail". The stuffed dot does not count.
	LineLimit int

	w         io.Writer
	lineStart bool // the next byte begins a line
	pendingCR bool // a CR ended the last write; its meaning waits for the next byte
	col       int  // bytes in the current output line, for LineLimit
	n         int64
	err       error
}

// NewDotWriter starts a body on w.
func NewDotWriter(w io.Writer) *DotWriter {
	return &DotWriter{w: w, lineStart: true}
}

// Write stuffs and sends p; it reports len(p) on success, whatever it
// added.
func (d *DotWriter) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	total := len(p)
	for len(p) > 0 {
		if d.pendingCR {
			d.pendingCR = false
			if p[0] == '\n' {
				d.endLine()
				p = p[1:]
				continue
			}
			d.content([]byte{'\r'})
		}
		if d.lineStart && p[0] == '.' {
			d.putString(".")
		}
		d.lineStart = false
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			seg := p
			if seg[len(seg)-1] == '\r' {
				d.pendingCR = true
				seg = seg[:len(seg)-1]
			}
			d.content(seg)
			break
		}
		seg := p[:i]
		if len(seg) > 0 && seg[len(seg)-1] == '\r' {
			seg = seg[:len(seg)-1]
		}
		d.content(seg)
		d.endLine()
		p = p[i+1:]
	}
	if d.err != nil {
		return 0, d.err
	}
	return total, nil
}

// content writes line content, breaking it at LineLimit.
func (d *DotWriter) content(b []byte) {
	for len(b) > 0 {
		if d.LineLimit > 0 && d.col >= d.LineLimit {
			d.putString("\r\n ")
			d.col = 1
		}
		n := len(b)
		if d.LineLimit > 0 {
			n = min(n, max(d.LineLimit-d.col, 1))
		}
		d.put(b[:n])
		d.col += n
		b = b[n:]
	}
}

func (d *DotWriter) endLine() {
	d.putString("\r\n")
	d.lineStart = true
	d.col = 0
}

func (d *DotWriter) put(b []byte) {
	if d.err != nil || len(b) == 0 {
		return
	}
	n, err := d.w.Write(b)
	d.n += int64(n)
	if err != nil {
		d.err = err
	}
}

// putString is put for the fixed strings; a bufio.Writer takes them
// without a copy.
func (d *DotWriter) putString(s string) {
	if d.err != nil {
		return
	}
	n, err := io.WriteString(d.w, s)
	d.n += int64(n)
	if err != nil {
		d.err = err
	}
}

// Close writes the end-of-data line. It does not close the underlying
// writer.
func (d *DotWriter) Close() error {
	if d.err != nil {
		return d.err
	}
	if d.pendingCR {
		// The content's last byte was a CR: it and the CRLF Close
		// adds make one line end.
		d.pendingCR = false
		d.endLine()
	}
	if !d.lineStart {
		d.endLine()
	}
	d.putString(".\r\n")
	return d.err
}

// Written is the number of bytes sent so far, stuffing included.
func (d *DotWriter) Written() int64 { return d.n }
