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
// does not end with a line end. It writes to w in pieces as large as the
// caller's writes; wrap w in a bufio.Writer and flush after Close.
type DotWriter struct {
	w         io.Writer
	lineStart bool // the next byte begins a line
	prevCR    bool // the last byte written was CR
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
		if d.lineStart && p[0] == '.' {
			d.put([]byte{'.'})
		}
		d.lineStart = false
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			d.put(p)
			d.prevCR = p[len(p)-1] == '\r'
			break
		}
		// Bytes before the LF, then the line end.
		cr := i > 0 && p[i-1] == '\r' || i == 0 && d.prevCR
		d.put(p[:i])
		if cr {
			d.put([]byte{'\n'})
		} else {
			d.put([]byte("\r\n"))
		}
		d.prevCR = false
		d.lineStart = true
		p = p[i+1:]
	}
	if d.err != nil {
		return 0, d.err
	}
	return total, nil
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

// Close writes the end-of-data line. It does not close the underlying
// writer.
func (d *DotWriter) Close() error {
	if d.err != nil {
		return d.err
	}
	if !d.lineStart {
		if d.prevCR {
			d.put([]byte{'\n'})
		} else {
			d.put([]byte("\r\n"))
		}
	}
	d.put([]byte(".\r\n"))
	return d.err
}

// Written is the number of bytes sent so far, stuffing included.
func (d *DotWriter) Written() int64 { return d.n }
