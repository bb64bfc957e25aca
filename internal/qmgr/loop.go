package qmgr

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// maxHeaderScan bounds how much of a message's header the loop check
// reads: cleanup already limits the header (header_size_limit), and a
// Delivered-To header past this point was not added by a mail system.
const maxHeaderScan = 1 << 20

// deliveredTo returns the lowercased values of the Delivered-To headers in
// the message header (the lines before the first empty one), unfolded and
// trimmed. local(8) uses them to detect a mail forwarding loop: a message
// that already carries "Delivered-To: rcpt" has been delivered to rcpt
// before and came back.
func deliveredTo(r io.Reader) ([]string, error) {
	br := bufio.NewReader(io.LimitReader(r, maxHeaderScan))
	var out []string
	var cur []byte // the Delivered-To header being unfolded, nil if none
	flush := func() {
		if cur != nil {
			out = append(out, strings.ToLower(strings.TrimSpace(string(cur))))
			cur = nil
		}
	}
	for {
		// ReadBytes holds at most maxHeaderScan bytes: the reader is limited.
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		body := bytes.TrimRight(line, "\r\n")
		switch {
		case len(body) == 0 && len(line) > 0:
			flush() // the empty line: end of the header
			return out, nil
		case len(body) > 0 && (body[0] == ' ' || body[0] == '\t'):
			if cur != nil {
				cur = append(cur, body...)
			}
		default:
			flush()
			if name, value, ok := bytes.Cut(body, []byte(":")); ok &&
				strings.EqualFold(string(bytes.TrimRight(name, " \t")), "Delivered-To") {
				cur = append([]byte{}, value...)
			}
		}
		if err != nil { // EOF: a message without a body
			flush()
			return out, nil
		}
	}
}
