package maildir

import "io"

// lfWriter turns the queue's CRLF line ends into the LF line ends a Maildir
// file holds (maildir(5) files are plain UNIX text; Dovecot and every other
// reader expects LF). It streams: only one byte of state (a CR that may be
// the first half of a CRLF split across two writes) survives between calls,
// so a message of any size passes through a fixed-size buffer.
type lfWriter struct {
	w         io.Writer
	pendingCR bool   // the previous chunk ended in CR
	buf       []byte // reused output buffer, never larger than the largest input chunk+1
	n         int64  // bytes written to w
	last      byte   // last byte written to w (0 before any), to end the file with LF
}

// convertCRLF appends src to dst with every CRLF replaced by LF, given
// whether the byte before src was a CR not yet emitted. It returns the new
// dst and whether src ends in a CR held back for the next call. A lone CR
// (not followed by LF) is content and is kept.
func convertCRLF(dst, src []byte, pendingCR bool) ([]byte, bool) {
	for _, c := range src {
		if pendingCR {
			if c != '\n' {
				dst = append(dst, '\r')
			}
			pendingCR = false
		}
		if c == '\r' {
			pendingCR = true
			continue
		}
		dst = append(dst, c)
	}
	return dst, pendingCR
}

// Write converts p and writes it through; a trailing CR is held back until
// the next Write or Flush shows whether an LF follows.
func (l *lfWriter) Write(p []byte) (int, error) {
	l.buf, l.pendingCR = convertCRLF(l.buf[:0], p, l.pendingCR)
	if err := l.emit(l.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeRaw writes bytes that need no conversion (the prepended headers).
func (l *lfWriter) writeRaw(p []byte) error { return l.emit(p) }

func (l *lfWriter) emit(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	if n > 0 {
		l.last = p[n-1]
	}
	return err
}

// Flush emits a held-back CR: at the end of the message it cannot start a
// CRLF any more.
func (l *lfWriter) Flush() error {
	if !l.pendingCR {
		return nil
	}
	l.pendingCR = false
	return l.emit([]byte{'\r'})
}
