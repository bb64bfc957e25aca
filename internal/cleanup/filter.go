package cleanup

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"moat/internal/maillog"
)

// Missing asks the filter to add the headers a message must have (RFC 5322
// §3.6) when its primary header block lacks them: Postfix does so for
// clients matching local_header_rewrite_clients, or for everyone with
// always_add_missing_headers = yes (postconf(5)). When the message has
// Resent- headers, the Resent- forms are added instead.
type Missing struct {
	Time       time.Time // arrival time, for Date: and Message-Id:
	Sender     string    // envelope sender; "" gives From: MAILER-DAEMON
	FullName   string    // sender's full name (sendmail -F), "" if unknown
	MyHostname string    // for Message-Id:
}

// Options configure one message's filter.
type Options struct {
	Checks Checks
	Limits Limits
	// BodyChecksSizeLimit is body_checks_size_limit: only the first so
	// many bytes of each body part (a multipart segment counts
	// separately, as the offsets reset) are inspected. 0 means Postfix's
	// default, 51200.
	BodyChecksSizeLimit int64
	// QueueID, Origin ("host[addr]") and Env appear in log records
	// (maillog.ContentAction); an empty QueueID logs as NOQUEUE.
	QueueID string
	Origin  string
	Env     maillog.Envelope
	// Received is written before the message, as the SMTP server writes
	// it into Postfix's cleanup: header_checks inspect it like any other
	// header (the seed's /^Received:/ IGNORE removes it). See
	// FormatReceived. "" adds none.
	Received string
	// HopcountLimit is hopcount_limit: a message with more Received: and
	// Delivered-To: headers than this is refused (Result.TooManyHops).
	// 0 means no limit.
	HopcountLimit int
	// AddMissing, if not nil, adds missing Date:, From: and Message-Id:.
	AddMissing *Missing
	// RewriteHeader, if not nil, rewrites the addresses of each primary
	// header after header_checks (cleanup(8) rewrites From:, To: ... for
	// the clients local_header_rewrite_clients names and for local
	// submissions; rewrite.Rewriter.HeaderFunc). It gets and returns one
	// logical header, folds as "\n". A result longer than
	// header_size_limit is not used: the header stays as received rather
	// than be cut. An error is a table failure: the message is not
	// accepted now.
	RewriteHeader func(header string) (string, error)
	// Log receives each log record as it happens (without the program
	// prefix; the caller logs warnings at warning level: the records are
	// "QUEUEID: warning: header ..."). nil keeps up to MaxLogs of them in
	// Result.Logs.
	Log func(record string)
}

// MaxLogs bounds Result.Logs, so that a WARN rule matching every line of
// a large body cannot grow memory without bound.
const MaxLogs = 1000

// Result is what the filter decided, read after Close.
type Result struct {
	// Reject, if not empty, is the reply text with its enhanced status
	// code ("5.7.1 message content rejected"): the SMTP server rejects
	// the message and must not commit the queue file.
	Reject string
	// Discard: claim delivery and drop the message (DISCARD).
	Discard bool
	// Hold: put the message on the hold queue (HOLD).
	Hold bool
	// Redirect is the last REDIRECT address; it overrides Filter.
	Redirect string
	// Filter is the last FILTER transport:destination.
	Filter string
	// BCC lists the addresses BCC actions added, without duplicates.
	BCC []string
	// TooManyHops: the primary headers hold more Received: and
	// Delivered-To: headers than hopcount_limit, a mail loop; Postfix's
	// SMTP server replies "554 5.4.0 Error: too many hops".
	TooManyHops bool
	// Added lists the headers the filter added (Received:, missing
	// headers, PREPENDed headers), unfolded, for the caller's records.
	Added []string
	// MIMEErrors are the MIME problems seen (strict_mime_* decide).
	MIMEErrors MIMEError
	// Logs holds log records when Options.Log is nil; LogsDropped counts
	// the ones past MaxLogs.
	Logs        []string
	LogsDropped int
}

// Filter is the cleanup content filter: an io.WriteCloser that the SMTP
// server puts between its DATA reader and the queue writer. It writes the
// filtered message to the underlying writer with CRLF line endings, the
// queue file's form, buffering at most one logical header or line piece
// plus a 16 KB output buffer.
type Filter struct {
	opt     Options
	out     *bufio.Writer
	p       *Parser
	res     Result
	started bool
	stopped bool // REJECT or DISCARD: nothing more is inspected or written
	pass    bool // PASS: nothing more is inspected
	// the body line in progress when it comes in pieces
	dropLine bool
	inPieces bool
	// headers seen in the primary block, lower-cased names
	seen map[string]bool
	hops int
	err  error
}

// New returns a filter writing to out (normally a *queue.Writer).
func New(out io.Writer, opt Options) *Filter {
	if opt.BodyChecksSizeLimit <= 0 {
		opt.BodyChecksSizeLimit = 51200
	}
	if opt.QueueID == "" {
		opt.QueueID = maillog.NoQueue
	}
	f := &Filter{opt: opt, out: bufio.NewWriterSize(out, 16<<10), seen: map[string]bool{}}
	f.p = NewParser(f, opt.Limits)
	return f
}

func (f *Filter) start() error {
	if f.started {
		return nil
	}
	f.started = true
	if f.opt.Received == "" {
		return nil
	}
	f.res.Added = append(f.res.Added, unfold(f.opt.Received))
	_, err := f.p.Write([]byte(f.opt.Received + "\n"))
	return err
}

// Write filters message content. Lines end in CRLF or LF.
func (f *Filter) Write(b []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if err := f.start(); err != nil {
		f.err = err
		return 0, err
	}
	if f.stopped {
		return len(b), nil
	}
	n, err := f.p.Write(b)
	if err != nil {
		f.err = err
	}
	return n, err
}

// Close ends the message and flushes the output; it does not close the
// underlying writer (the SMTP server commits or aborts the queue file
// after reading Result).
func (f *Filter) Close() error {
	if f.err != nil {
		return f.err
	}
	if err := f.start(); err != nil {
		f.err = err
		return err
	}
	if !f.stopped {
		if err := f.p.Close(); err != nil {
			f.err = err
			return err
		}
	}
	f.res.MIMEErrors = f.p.Errors()
	if err := f.out.Flush(); err != nil {
		f.err = fmt.Errorf("cleanup: write queue file: %w", err)
		return f.err
	}
	return nil
}

// Result returns the filter's decisions; call it after Close.
func (f *Filter) Result() *Result { return &f.res }

func (f *Filter) log(action, class, content, text string) {
	f.record(maillog.ContentAction(f.opt.QueueID, action, class, Printable(content), f.opt.Origin, f.opt.Env, text))
}

func (f *Filter) record(rec string) {
	if f.opt.Log != nil {
		f.opt.Log(rec)
		return
	}
	if len(f.res.Logs) >= MaxLogs {
		f.res.LogsDropped++
		return
	}
	f.res.Logs = append(f.res.Logs, rec)
}

func (f *Filter) write(s []byte) error {
	if f.stopped {
		return nil
	}
	if _, err := f.out.Write(s); err != nil {
		return fmt.Errorf("cleanup: write queue file: %w", err)
	}
	return nil
}

// writeHeader writes a logical header, its folds as CRLF.
func (f *Filter) writeHeader(h string) error {
	return f.write([]byte(strings.ReplaceAll(h, "\n", "\r\n") + "\r\n"))
}

func unfold(h string) string { return strings.ReplaceAll(h, "\n", "") }

var dsnCode = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}( |$)`)

// act carries out the actions common to headers and body lines and
// reports whether the line is to be dropped and what replaces or precedes
// it.
func (f *Filter) act(v Verdict, class, content string) (drop bool, prepend, replace string) {
	text := v.Text
	switch v.Action {
	case "":
	case ActReject:
		if text == "" {
			text = "message content rejected"
		}
		if !dsnCode.MatchString(text) {
			text = "5.7.1 " + text
		}
		f.res.Reject = text
		f.log("reject", class, content, text)
		f.stopped = true
		return true, "", ""
	case ActDiscard:
		f.res.Discard = true
		f.log("discard", class, content, text)
		f.stopped = true
		return true, "", ""
	case ActHold:
		f.res.Hold = true
		f.log("hold", class, content, text)
	case ActWarn, ActInfo:
		f.log(v.Action.LogName(), class, content, text)
	case ActPass:
		f.log("pass", class, content, text)
		f.pass = true
	case ActIgnore:
		return true, "", ""
	case ActStrip:
		f.log("strip", class, content, text)
		return true, "", ""
	case ActRedirect:
		if !strings.Contains(text, "@") {
			f.log("warning", class, content, "ignoring REDIRECT without user@domain: "+text)
			break
		}
		f.res.Redirect = text
		f.log("redirect", class, content, text)
	case ActFilter:
		if !strings.Contains(text, ":") {
			f.log("warning", class, content, "ignoring FILTER without transport:destination: "+text)
			break
		}
		f.res.Filter = text
		f.log("filter", class, content, text)
	case ActBCC:
		if !strings.Contains(text, "@") {
			f.log("warning", class, content, "ignoring BCC without user@domain: "+text)
			break
		}
		if !slices.Contains(f.res.BCC, text) {
			f.res.BCC = append(f.res.BCC, text)
		}
		f.log("bcc", class, content, text)
	case ActPrepend:
		if class == "header" && !IsHeaderStart([]byte(text)) {
			f.log("warning", class, content, "bad PREPEND header text, need \"headername: headervalue\": "+text)
			break
		}
		return false, text, ""
	case ActReplace:
		if class == "header" && !IsHeaderStart([]byte(text)) {
			f.log("warning", class, content, "bad REPLACE header text, need \"headername: headervalue\": "+text)
			break
		}
		return false, "", text
	default:
		f.log("warning", class, content, "unknown action: "+string(v.Action))
	}
	return false, "", ""
}

// Header is the Parser callback for a logical header.
func (f *Filter) Header(class Class, h []byte, _ int64) error {
	if f.stopped {
		return nil
	}
	hs := string(h)
	if class == Primary {
		// Hops are counted before the checks run, so that a rule such
		// as /^Received:/ IGNORE does not disable loop detection.
		if name, _, ok := splitHeader(hs); ok && (strings.EqualFold(name, "Received") || strings.EqualFold(name, "Delivered-To")) {
			f.hops++
			if f.opt.HopcountLimit > 0 && f.hops > f.opt.HopcountLimit {
				f.res.TooManyHops = true
			}
		}
	}
	if !f.pass {
		v, err := f.opt.Checks.CheckHeader(class, hs)
		if err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		drop, pre, repl := f.act(v, "header", hs)
		if pre != "" {
			f.res.Added = append(f.res.Added, pre)
			if err := f.writeHeader(pre); err != nil {
				return err
			}
		}
		if drop {
			return nil
		}
		if repl != "" {
			hs = repl
		}
	}
	if class == Primary {
		if name, _, ok := splitHeader(hs); ok {
			f.seen[strings.ToLower(name)] = true
		}
		if f.opt.RewriteHeader != nil {
			rw, err := f.opt.RewriteHeader(hs)
			if err != nil {
				return fmt.Errorf("cleanup: %w", err)
			}
			if f.opt.Limits.HeaderSize <= 0 || len(rw) <= f.opt.Limits.HeaderSize {
				hs = rw
			}
		}
	}
	return f.writeHeader(hs)
}

// HeaderEnd is the Parser callback at the end of the primary headers: the
// place where missing headers are added.
func (f *Filter) HeaderEnd() error {
	m := f.opt.AddMissing
	if m == nil || f.stopped {
		return nil
	}
	prefix := ""
	for name := range f.seen {
		if strings.HasPrefix(name, "resent-") {
			prefix = "Resent-"
		}
	}
	has := func(n string) bool { return f.seen[strings.ToLower(prefix+n)] }
	var add []string
	if !has("Date") {
		add = append(add, prefix+"Date: "+MailDate(m.Time))
	}
	if !has("From") {
		from := m.Sender
		switch {
		case from == "":
			from = "MAILER-DAEMON"
		case m.FullName != "":
			from = quoteName(m.FullName) + " <" + from + ">"
		}
		add = append(add, prefix+"From: "+from)
	}
	if !has("Message-Id") {
		add = append(add, fmt.Sprintf("%sMessage-Id: <%s.%s@%s>", prefix,
			m.Time.UTC().Format("20060102150405"), f.opt.QueueID, m.MyHostname))
	}
	for _, h := range add {
		if f.opt.RewriteHeader != nil {
			// The From: made of the envelope sender is an address
			// header like any other (Postfix builds it from the
			// sender after canonical mapping).
			rw, err := f.opt.RewriteHeader(h)
			if err != nil {
				return fmt.Errorf("cleanup: %w", err)
			}
			h = rw
		}
		f.res.Added = append(f.res.Added, h)
		if err := f.writeHeader(h); err != nil {
			return err
		}
	}
	return nil
}

// quoteName quotes a display name that contains RFC 5322 specials (or
// the "!%" address operators), as header_from_format = standard does.
func quoteName(n string) string {
	if !strings.ContainsAny(n, "()<>[]:;@\\,.\"!%") {
		return n
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(n) + `"`
}

// Body is the Parser callback for a body line or piece.
func (f *Filter) Body(rec byte, line []byte, off int64) error {
	if f.stopped {
		return nil
	}
	// A piece after the first belongs to a line already decided.
	if f.inPieces {
		if rec == 'N' {
			f.inPieces = false
		}
		if f.dropLine {
			if rec == 'N' {
				f.dropLine = false
			}
			return nil
		}
		return f.writeBody(rec, line)
	}
	if rec == 'L' {
		f.inPieces = true
	}
	if !f.pass && off < f.opt.BodyChecksSizeLimit && len(f.opt.Checks.Body) > 0 {
		v, err := f.opt.Checks.CheckBody(string(line))
		if err != nil {
			return fmt.Errorf("cleanup: %w", err)
		}
		drop, pre, repl := f.act(v, "body", string(line))
		if pre != "" {
			if err := f.write([]byte(pre + "\r\n")); err != nil {
				return err
			}
		}
		if drop || repl != "" {
			if rec == 'L' {
				f.dropLine = true
			}
			if drop {
				return nil
			}
			return f.writeBody('N', []byte(repl))
		}
	}
	return f.writeBody(rec, line)
}

func (f *Filter) writeBody(rec byte, line []byte) error {
	if err := f.write(line); err != nil {
		return err
	}
	if rec == 'N' {
		return f.write([]byte("\r\n"))
	}
	return nil
}

// Warn is the Parser callback for MIME problems. Like Postfix's cleanup
// without strict_mime_encoding_domain, it logs nothing: the problems are
// in Result.MIMEErrors for a caller that enforces them.
func (f *Filter) Warn(string) {}
