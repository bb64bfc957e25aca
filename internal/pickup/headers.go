package pickup

import (
	"bytes"
	"io"
	"moat/internal/cleanup"
	"strings"
)

// maxHeader bounds the logical header headerFilter holds to decide on it;
// a longer one passes through unjudged (cleanup truncates it anyway at
// header_size_limit).
const maxHeader = 1 << 20

// headerFilter removes message_drop_headers (postconf(5): by default Bcc:,
// Content-Length:, Resent-Bcc:, Return-Path:) from the primary header
// block, as Postfix's cleanup(8) does, and notes the Message-Id for the
// log. Everything after the header block passes through untouched.
type headerFilter struct {
	w         io.Writer
	drop      map[string]bool
	cur       []byte // the logical header being collected
	line      []byte // a partial line
	body      bool
	messageID string
}

func (h *headerFilter) Write(b []byte) (int, error) {
	n := len(b)
	if h.body {
		return h.w.Write(b)
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			h.line = append(h.line, b...)
			if len(h.line) > maxHeader {
				if err := h.flushRaw(); err != nil {
					return 0, err
				}
			}
			return n, nil
		}
		h.line = append(h.line, b[:i+1]...)
		b = b[i+1:]
		if err := h.endLine(); err != nil {
			return 0, err
		}
		if h.body {
			if _, err := h.w.Write(b); err != nil {
				return 0, err
			}
			return n, nil
		}
	}
	return n, nil
}

// flushRaw gives up judging: what is held passes through as is and the
// rest of the message is treated as body.
func (h *headerFilter) flushRaw() error {
	h.body = true
	if _, err := h.w.Write(h.cur); err != nil {
		return err
	}
	_, err := h.w.Write(h.line)
	h.cur, h.line = nil, nil
	return err
}

// endLine handles one complete line of the header block.
func (h *headerFilter) endLine() error {
	line := h.line
	h.line = nil
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && len(h.cur) > 0 {
		h.cur = append(h.cur, line...)
		if len(h.cur) > maxHeader {
			h.line = nil
			return h.flushRaw()
		}
		return nil
	}
	if err := h.emit(); err != nil {
		return err
	}
	if !cleanup.IsHeaderStart(line) {
		h.body = true
		_, err := h.w.Write(line)
		return err
	}
	h.cur = line
	return nil
}

// emit writes (or drops) the logical header held.
func (h *headerFilter) emit() error {
	if len(h.cur) == 0 {
		return nil
	}
	cur := h.cur
	h.cur = nil
	name, value, _ := bytes.Cut(cur, []byte(":"))
	key := strings.ToLower(strings.TrimRight(string(name), " \t"))
	if h.drop[key] {
		return nil
	}
	if key == "message-id" && h.messageID == "" {
		h.messageID = strings.Join(strings.Fields(string(value)), " ")
	}
	_, err := h.w.Write(cur)
	return err
}

// Close ends the message: a header block without a body is emitted.
func (h *headerFilter) Close() error {
	if h.body {
		return nil
	}
	if err := h.emit(); err != nil {
		return err
	}
	if len(h.line) > 0 {
		_, err := h.w.Write(h.line)
		return err
	}
	return nil
}
