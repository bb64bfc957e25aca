// Package cleanup is the content filter between the SMTP server's DATA
// reader and the queue writer (Postfix's cleanup(8)): it recognises the MIME
// structure of a message as it streams past, applies header_checks,
// mime_header_checks, nested_header_checks and body_checks
// (header_checks(5)), and adds the headers a message must carry (Received:,
// RFC 5321 §4.4; Date/From/Message-Id for local submissions). The message
// is never held whole in memory: only the current logical header (at most
// header_size_limit bytes) or line piece (at most line_length_limit bytes)
// is buffered.
//
// The SMTP server uses it so:
//
//	w, _ := q.NewMessage()
//	f := cleanup.New(w, opts) // opts from Settings.Options() plus the message's own
//	smtp.ReadData(r, f, dataOpts)
//	f.Close()
//	res := f.Result() // Reject? Discard? Hold? Redirect, Filter, BCC...
//	// then w.Commit() or w.Abort()
//
// Postfix's test vectors (global/mime_test.in, header_body_checks_*.ref)
// pass unchanged. Deliberate differences from Postfix:
//
//   - Body lines longer than line_length_limit are stored whole (the queue
//     has no record boundaries); body_checks inspect only their first
//     line_length_limit bytes, and IGNORE, STRIP or REPLACE on that first
//     piece act on the whole line.
//   - hopcount_limit counts every Received:/Delivered-To: header of the
//     primary block before header_checks run, so a rule such as
//     /^Received:/ IGNORE cannot disable mail-loop detection.
//   - In a quoted MIME parameter (a multipart boundary), a fold's newline
//     and the blanks after it are removed; Postfix's matching is a prefix
//     comparison either way, and the vectors agree.
//   - Output lines end in CRLF, the queue file's form.
//   - A To: header for undisclosed recipients is never added
//     (undisclosed_recipients_header is empty by default in Postfix 3.7).
package cleanup
