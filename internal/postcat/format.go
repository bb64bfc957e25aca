package postcat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"moat/internal/queue"

	"moat/internal/cleanup"
)

// writeEnvelope prints the envelope records as the package comment lists.
func writeEnvelope(w io.Writer, e *queue.Envelope, loc *time.Location) {
	if loc == nil {
		loc = time.Local
	}
	fmt.Fprintf(w, "message_size: %d\n", e.Size)
	fmt.Fprintf(w, "message_arrival_time: %s\n", e.Arrival.In(loc).Format("Mon Jan _2 15:04:05 2006"))
	attr := func(name, value string) {
		if value != "" {
			fmt.Fprintf(w, "named_attribute: %s=%s\n", name, value)
		}
	}
	attr("client_name", e.ClientName)
	attr("client_address", e.ClientAddr)
	attr("helo_name", e.Helo)
	attr("protocol_name", e.Protocol)
	attr("sasl_username", e.SASLUser)
	attr("envelope_id", e.EnvID)
	attr("dsn_ret", e.Ret)
	attr("message_id", e.MessageID)
	attr("flags", flagNames(e.Flags))
	if e.Filter != "" {
		fmt.Fprintf(w, "content_filter: %s\n", e.Filter)
	}
	fmt.Fprintf(w, "sender: %s\n", e.Sender)
	for _, r := range e.Recipients {
		if r.Orig != "" {
			fmt.Fprintf(w, "original_recipient: %s\n", r.Orig)
		}
		if r.ORCPT != "" {
			fmt.Fprintf(w, "dsn_orig_rcpt: %s\n", r.ORCPT)
		}
		if r.Notify != 0 {
			fmt.Fprintf(w, "dsn_notify: %d\n", r.Notify)
		}
		switch r.State {
		case queue.RcptDelivered, queue.RcptBounced:
			fmt.Fprintf(w, "done_recipient: %s\n", r.Address)
		default:
			fmt.Fprintf(w, "recipient: %s\n", r.Address)
		}
		if r.State != queue.RcptPending {
			if r.Reason != "" {
				fmt.Fprintf(w, "recipient_status: %s: %s\n", r.State, r.Reason)
			} else {
				fmt.Fprintf(w, "recipient_status: %s\n", r.State)
			}
		}
	}
}

// flagNames spells a flag set the way the records are documented.
func flagNames(f queue.Flags) string {
	var names []string
	for _, x := range []struct {
		bit  queue.Flags
		name string
	}{{queue.FlagHold, "hold"}, {queue.FlagSMTPUTF8, "smtputf8"}, {queue.Flag8BitMIME, "8bitmime"}, {queue.FlagRequireTLS, "requiretls"}} {
		if f&x.bit != 0 {
			names = append(names, x.name)
			f &^= x.bit
		}
	}
	if f != 0 {
		names = append(names, "0x"+strconv.FormatUint(uint64(f), 16))
	}
	return strings.Join(names, ",")
}

// maxChunk bounds how much of one line is held in memory; a longer line is
// passed through in pieces.
const maxChunk = 64 << 10

// writeContent copies the message content with CRLF line ends turned into
// LF, as postcat shows Postfix's records, keeping the header lines, the
// body lines or both. The header ends at the first line that is neither a
// header field ("name:", RFC 5322 section 2.2) nor its continuation; that
// line, normally the empty one, is the first body line, as in Postfix's
// postcat -b.
func writeContent(w io.Writer, content io.Reader, sec Sections) error {
	r := bufio.NewReaderSize(content, maxChunk)
	inHeader, seenHeader, midLine := true, false, false
	show := false
	for {
		chunk, err := r.ReadSlice('\n')
		if len(chunk) > 0 {
			if !midLine {
				if inHeader && !(seenHeader && (chunk[0] == ' ' || chunk[0] == '\t')) {
					if cleanup.IsHeaderStart(chunk) {
						seenHeader = true
					} else {
						inHeader = false
					}
				}
				show = inHeader && sec.Header || !inHeader && sec.Body
			}
			full := chunk[len(chunk)-1] == '\n'
			if show {
				out := chunk
				if full {
					out = bytes.TrimSuffix(bytes.TrimSuffix(out, []byte("\n")), []byte("\r"))
				}
				if _, werr := w.Write(out); werr != nil {
					return werr
				}
				if full {
					if _, werr := io.WriteString(w, "\n"); werr != nil {
						return werr
					}
				}
			}
			midLine = !full
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			if midLine && show {
				// A last line without its newline is shown as a line.
				if _, werr := io.WriteString(w, "\n"); werr != nil {
					return werr
				}
			}
			return nil
		default:
			return err
		}
	}
}
