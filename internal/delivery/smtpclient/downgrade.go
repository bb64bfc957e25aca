package smtpclient

import (
	"bytes"
	"mime"
	"mime/quotedprintable"
	"strings"
)

// has8bit reports a byte with the high bit set.
func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// maxMIMEDepth bounds the nesting Downgrade follows, as Postfix's
// mime_nesting_limit (100) bounds cleanup's; deeper parts pass as they
// are.
const maxMIMEDepth = 20

// Downgrade converts an 8-bit message (header and body, lines ending in
// CRLF) for a server that did not offer 8BITMIME, as Postfix's smtp(8)
// does with its MIME state machine (RFC 6152 section 3, RFC 2045): each
// leaf part whose body holds 8-bit bytes and whose
// Content-Transfer-Encoding is 7bit, 8bit, binary or absent is encoded
// quoted-printable and labelled so; multipart bodies are followed part by
// part and message/rfc822 bodies as nested messages, their own
// encoding label set to 7bit. Header fields are left as they are (8-bit
// header text has no MIME-level downgrade short of RFC 2047 encoding,
// which Postfix does not do either), and so are parts already encoded
// base64 or quoted-printable.
func Downgrade(msg []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(msg) + len(msg)/8)
	downgradeEntity(&out, msg, "text/plain", 0)
	return out.Bytes()
}

// downgradeEntity writes one MIME entity (header, empty line, body)
// downgraded; defType is the Content-Type it has when it declares none.
func downgradeEntity(out *bytes.Buffer, ent []byte, defType string, depth int) {
	if depth > maxMIMEDepth || !has8bit(ent) {
		out.Write(ent)
		return
	}
	head, body, sep := splitHeader(ent)
	ctype, params := defType, map[string]string(nil)
	cte := ""
	for _, f := range headerFields(head) {
		name, value, _ := strings.Cut(f, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-type":
			if t, p, err := mime.ParseMediaType(unfold(value)); err == nil {
				ctype, params = t, p
			}
		case "content-transfer-encoding":
			cte = strings.ToLower(strings.TrimSpace(unfold(value)))
		}
	}
	identity := cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"
	switch {
	case !identity || !has8bit(body):
		out.Write(ent)
	case strings.HasPrefix(ctype, "multipart/") && params["boundary"] != "":
		writeHeader(out, head, sep, cte, "7bit")
		child := "text/plain"
		if ctype == "multipart/digest" {
			child = "message/rfc822"
		}
		downgradeMultipart(out, body, params["boundary"], child, depth)
	case ctype == "message/rfc822":
		writeHeader(out, head, sep, cte, "7bit")
		downgradeEntity(out, body, "text/plain", depth+1)
	case strings.HasPrefix(ctype, "multipart/") || strings.HasPrefix(ctype, "message/"):
		// A multipart without boundary or another message type cannot
		// be re-encoded (RFC 2046 section 5.2.2 allows only identity
		// encodings there): sent as it is.
		out.Write(ent)
	default:
		writeHeader(out, head, sep, cte, "quoted-printable")
		qp := quotedprintable.NewWriter(out)
		qp.Write(body)
		qp.Close()
		if bytes.HasSuffix(body, []byte("\n")) && !bytes.HasSuffix(out.Bytes(), []byte("\r\n")) {
			out.WriteString("\r\n")
		}
	}
}

// splitHeader splits an entity at its first empty line: head keeps its
// last line end, sep is the empty line ("\r\n", or "" when there is no
// body), body follows.
func splitHeader(ent []byte) (head []byte, body []byte, sep string) {
	for i := 0; i < len(ent); {
		j := bytes.IndexByte(ent[i:], '\n')
		if j < 0 {
			return ent, nil, ""
		}
		line := ent[i : i+j+1]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return ent[:i], ent[i+j+1:], string(line)
		}
		i += j + 1
	}
	return ent, nil, ""
}

// headerFields splits a header block into fields, continuation lines
// kept with their field, line ends kept; each field is a slice of head,
// so a field of many continuation lines costs no copying.
func headerFields(head []byte) []string {
	var fields []string
	start := -1
	for i := 0; i < len(head); {
		j := bytes.IndexByte(head[i:], '\n')
		end := len(head)
		if j >= 0 {
			end = i + j + 1
		}
		if !(head[i] == ' ' || head[i] == '\t') || start < 0 {
			if start >= 0 {
				fields = append(fields, string(head[start:i]))
			}
			start = i
		}
		i = end
	}
	if start >= 0 {
		fields = append(fields, string(head[start:]))
	}
	return fields
}

func unfold(s string) string {
	return strings.NewReplacer("\r\n", "", "\n", "").Replace(s)
}

// writeHeader writes head with its Content-Transfer-Encoding replaced by
// cte (appended when it had none and the new one is not the 7bit
// default), then the empty line.
func writeHeader(out *bytes.Buffer, head []byte, sep, old, cte string) {
	for _, f := range headerFields(head) {
		name, _, _ := strings.Cut(f, ":")
		if strings.EqualFold(strings.TrimSpace(name), "content-transfer-encoding") {
			continue
		}
		out.WriteString(f)
	}
	if old != "" || cte != "7bit" {
		out.WriteString("Content-Transfer-Encoding: " + cte + "\r\n")
	}
	if sep == "" {
		sep = "\r\n"
	}
	out.WriteString(sep)
}

// downgradeMultipart downgrades each body part between the boundary
// delimiter lines (RFC 2046 section 5.1.1); the line end before a
// delimiter belongs to the delimiter. Preamble and epilogue pass as they
// are.
func downgradeMultipart(out *bytes.Buffer, body []byte, boundary, child string, depth int) {
	delim := []byte("--" + boundary)
	start := -1 // offset of the current part's first byte, -1 in the preamble
	closed := false
	i := 0
	for i < len(body) {
		j := bytes.IndexByte(body[i:], '\n')
		end := len(body)
		if j >= 0 {
			end = i + j + 1
		}
		line := body[i:end]
		trimmed := bytes.TrimRight(line, " \t\r\n")
		if !closed && bytes.HasPrefix(trimmed, delim) {
			rest := trimmed[len(delim):]
			if len(rest) == 0 || string(rest) == "--" {
				if start >= 0 {
					part := body[start:i]
					part, eol := cutEOL(part)
					downgradeEntity(out, part, child, depth+1)
					out.Write(eol)
				}
				out.Write(line)
				start = end
				if string(rest) == "--" {
					closed = true
					start = -1
				}
				i = end
				continue
			}
		}
		if start < 0 {
			out.Write(line)
		}
		i = end
	}
	if start >= 0 && start < len(body) {
		// No closing delimiter: the last part runs to the end.
		downgradeEntity(out, body[start:], child, depth+1)
	}
}

// cutEOL splits the line end off the end of b.
func cutEOL(b []byte) ([]byte, []byte) {
	n := len(b)
	if n > 0 && b[n-1] == '\n' {
		n--
		if n > 0 && b[n-1] == '\r' {
			n--
		}
	}
	return b[:n], b[n:]
}
