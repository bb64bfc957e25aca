// Package maildrop is the file format of local submission: what postdrop
// writes into queue_directory/maildrop/ and what pickup reads back out of
// it (Postfix's postdrop(1) and pickup(8) share a record format the same
// way). The format is moat's own, versioned and checksummed, because the
// writer is an unprivileged user: pickup must treat every byte as hostile,
// so the reader bounds every size, refuses anything it does not know, and
// accepts a file only when its trailer's length and SHA-256 agree with
// what precedes it (a half-written or tampered file is refused whole).
//
// Layout (version 1, and version 2 which adds the verify line):
//
//	MOATDROP 1\n              or MOATDROP 2\n when a version 2 field is used
//	sender ADDRESS\n          exactly once; "" is the null sender <>
//	sender-given yes|no\n     sendmail -f/-r was used (else the login name)
//	full-name TEXT\n          optional: sendmail -F (for a missing From:)
//	envid TEXT\n              optional: sendmail -V (RFC 3461 ENVID)
//	ret FULL|HDRS\n           optional: sendmail -R (RFC 3461 RET)
//	notify LIST\n             optional: sendmail -N (RFC 3461 NOTIFY)
//	body 7BIT|8BITMIME\n      optional: sendmail -B
//	verify yes\n              version 2 only: sendmail -bv (a report, no delivery)
//	rcpt ADDRESS\n            one per envelope recipient, at least one
//	\n                        end of the envelope
//	CONTENT                   the message, lines ending in CRLF
//	TRAILER                   "\x00END " + 16 hex digits of the content
//	                          length + " " + 64 hex digits of the SHA-256
//	                          of everything before the trailer + "\n"
//
// A writer uses version 2 only for a file that needs it (sendmail -bv), so
// that ordinary mail stays readable by a moat that knows only version 1
// (after a downgrade); that older reader refuses a version 2 file whole
// rather than deliver a verification request as mail.
//
// The submitting user is deliberately absent: pickup takes it from the
// file's owner, which the kernel sets and the user cannot forge.
package maildrop

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"moat/internal/smtp"
)

// Magic is the first line of a version 1 maildrop file; the number after
// it is the format version, so that a later moat can read old files left
// in maildrop/ across an upgrade, and an old moat refuses new ones.
const Magic = "MOATDROP 1"

// Magic2 is the first line of a version 2 file: version 1 plus the verify
// field. The reader accepts both.
const Magic2 = "MOATDROP 2"

// TrailerLen is the fixed size of the trailer that ends every file.
const TrailerLen = 5 + 16 + 1 + 64 + 1

// Bounds on the envelope part, which pickup parses from untrusted input:
// one line is at most MaxLine bytes (an address is at most 320 bytes by RFC
// 5321 §4.5.3.1, and Postfix's own records cap at a few KB), the whole
// envelope at most MaxEnvelope bytes, and at most MaxRecipients recipients.
const (
	MaxLine       = 4096
	MaxEnvelope   = 8 << 20
	MaxRecipients = 100000
)

// Envelope is what sendmail learned from its command line (and, with -t,
// from the message headers).
type Envelope struct {
	Sender      string
	SenderGiven bool
	FullName    string
	EnvID       string
	Ret         string // "", "FULL" or "HDRS"
	Notify      string // "" or sendmail -N's list, as given
	Body        string // "", "7BIT" or "8BITMIME"
	// Verify is sendmail -bv: the queue manager reports how each
	// recipient would be delivered, to the sender, and delivers nothing
	// (sendmail(1), ADDRESS_VERIFICATION_README). Version 2 only.
	Verify     bool
	Recipients []string
}

// ErrFormat marks a file that is not a well-formed maildrop file.
var ErrFormat = errors.New("maildrop: malformed file")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// validValue refuses what would break the line structure or hide in logs:
// control characters (CR and LF above all) and DEL.
func validValue(s string) bool {
	if len(s) > MaxLine-32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// Validate checks an envelope before it is written, so that the writer
// cannot produce a file the reader refuses.
func (e *Envelope) Validate() error {
	if len(e.Recipients) == 0 {
		return errors.New("maildrop: no recipients")
	}
	if len(e.Recipients) > MaxRecipients {
		return fmt.Errorf("maildrop: too many recipients (%d, at most %d)", len(e.Recipients), MaxRecipients)
	}
	for _, v := range []string{e.Sender, e.FullName, e.EnvID, e.Notify} {
		if !validValue(v) {
			return fmt.Errorf("maildrop: value %q has control characters or is too long", v)
		}
	}
	if _, ok := ParseNotify(e.Notify); !ok {
		return fmt.Errorf("maildrop: bad notify %q", e.Notify)
	}
	switch e.Ret {
	case "", "FULL", "HDRS":
	default:
		return fmt.Errorf("maildrop: bad ret %q", e.Ret)
	}
	switch e.Body {
	case "", "7BIT", "8BITMIME":
	default:
		return fmt.Errorf("maildrop: bad body type %q", e.Body)
	}
	size := 0
	for _, r := range e.Recipients {
		if r == "" || !validValue(r) {
			return fmt.Errorf("maildrop: bad recipient %q", r)
		}
		size += len(r) + 6
	}
	if size > MaxEnvelope-64*1024 {
		return errors.New("maildrop: envelope too large")
	}
	return nil
}

// Writer writes one maildrop file: the envelope at once, then the content
// through Write, then the trailer at Close.
type Writer struct {
	w     io.Writer
	sum   hash.Hash
	n     int64 // content bytes
	limit int64
	err   error
}

// ErrTooBig is returned by Writer.Write once the content passes the limit
// given to NewWriter (message_size_limit).
var ErrTooBig = errors.New("message file too big")

// NewWriter validates env and writes it; limit (> 0) caps the content.
func NewWriter(w io.Writer, env *Envelope, limit int64) (*Writer, error) {
	if err := env.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if env.Verify {
		b.WriteString(Magic2 + "\n")
	} else {
		b.WriteString(Magic + "\n")
	}
	b.WriteString("sender " + env.Sender + "\n")
	b.WriteString("sender-given " + yesNo(env.SenderGiven) + "\n")
	opt := func(k, v string) {
		if v != "" {
			b.WriteString(k + " " + v + "\n")
		}
	}
	opt("full-name", env.FullName)
	opt("envid", env.EnvID)
	opt("ret", env.Ret)
	opt("notify", env.Notify)
	opt("body", env.Body)
	if env.Verify {
		b.WriteString("verify yes\n")
	}
	for _, r := range env.Recipients {
		b.WriteString("rcpt " + r + "\n")
	}
	b.WriteString("\n")
	mw := &Writer{w: w, sum: sha256.New(), limit: limit}
	mw.sum.Write(b.Bytes())
	if _, err := w.Write(b.Bytes()); err != nil {
		return nil, err
	}
	return mw, nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Write adds message content (lines ending in CRLF).
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.limit > 0 && w.n+int64(len(p)) > w.limit {
		w.err = ErrTooBig
		return 0, w.err
	}
	n, err := w.w.Write(p)
	w.sum.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Size is the content length written so far.
func (w *Writer) Size() int64 { return w.n }

// Close writes the trailer; it does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	_, err := io.WriteString(w.w, trailer(w.n, w.sum.Sum(nil)))
	return err
}

func trailer(n int64, sum []byte) string {
	return fmt.Sprintf("\x00END %016x %s\n", n, hex.EncodeToString(sum))
}

// File is a parsed maildrop file: its envelope and where its content is.
type File struct {
	Envelope
	ContentOffset int64
	ContentLen    int64
}

// Content returns a reader of the message content of a file read from r.
func (f *File) Content(r io.ReaderAt) *io.SectionReader {
	return io.NewSectionReader(r, f.ContentOffset, f.ContentLen)
}

// Read parses and verifies a maildrop file of the given size held by r.
// maxContent (> 0) bounds the content (message_size_limit); a file past it
// is refused before anything else is read. Every error wraps ErrFormat
// except I/O errors.
func Read(r io.ReaderAt, size, maxContent int64) (*File, error) {
	if size < int64(len(Magic))+TrailerLen+2 {
		return nil, formatErr("file too short (%d bytes)", size)
	}
	tr := make([]byte, TrailerLen)
	if _, err := r.ReadAt(tr, size-TrailerLen); err != nil {
		return nil, fmt.Errorf("maildrop: read trailer: %w", err)
	}
	if string(tr[:5]) != "\x00END " || tr[21] != ' ' || tr[TrailerLen-1] != '\n' {
		return nil, formatErr("no trailer (incomplete file)")
	}
	clen, err := strconv.ParseUint(string(tr[5:21]), 16, 63)
	if err != nil {
		return nil, formatErr("bad content length in trailer")
	}
	want, err := hex.DecodeString(string(tr[22:86]))
	if err != nil || len(want) != sha256.Size {
		return nil, formatErr("bad checksum in trailer")
	}
	body := size - TrailerLen
	if clen > uint64(body) {
		return nil, formatErr("content length %d exceeds the file", clen)
	}
	if maxContent > 0 && int64(clen) > maxContent {
		return nil, formatErr("content of %d bytes exceeds the size limit %d", clen, maxContent)
	}
	envLen := body - int64(clen)
	if envLen > MaxEnvelope {
		return nil, formatErr("envelope of %d bytes is too large", envLen)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, body)); err != nil {
		return nil, fmt.Errorf("maildrop: read: %w", err)
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return nil, formatErr("checksum mismatch (damaged or incomplete file)")
	}
	env, err := parseEnvelope(io.NewSectionReader(r, 0, envLen))
	if err != nil {
		return nil, err
	}
	return &File{Envelope: *env, ContentOffset: envLen, ContentLen: int64(clen)}, nil
}

// parseEnvelope reads the envelope lines, which must end exactly at the
// blank line that closes them.
func parseEnvelope(r io.Reader) (*Envelope, error) {
	br := bufio.NewReaderSize(r, MaxLine)
	line := func() (string, error) {
		l, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", formatErr("envelope line too long")
		}
		if err != nil {
			return "", formatErr("envelope ends without a blank line")
		}
		return string(l[:len(l)-1]), nil
	}
	first, err := line()
	if err != nil {
		return nil, err
	}
	version := 0
	switch first {
	case Magic:
		version = 1
	case Magic2:
		version = 2
	default:
		if strings.HasPrefix(first, "MOATDROP ") {
			return nil, formatErr("unsupported version %q", first)
		}
		return nil, formatErr("not a maildrop file")
	}
	env := &Envelope{}
	seen := map[string]bool{}
	for {
		l, err := line()
		if err != nil {
			return nil, err
		}
		if l == "" {
			break
		}
		key, val, ok := strings.Cut(l, " ")
		if !ok {
			return nil, formatErr("bad envelope line %q", trunc(l))
		}
		if !validValue(val) {
			return nil, formatErr("%s: control characters in value", key)
		}
		if key != "rcpt" {
			if seen[key] {
				return nil, formatErr("%s given twice", key)
			}
			seen[key] = true
		}
		switch key {
		case "sender":
			env.Sender = val
		case "sender-given":
			switch val {
			case "yes":
				env.SenderGiven = true
			case "no":
			default:
				return nil, formatErr("sender-given %q", trunc(val))
			}
		case "full-name":
			env.FullName = val
		case "envid":
			env.EnvID = val
		case "ret":
			env.Ret = val
		case "notify":
			env.Notify = val
		case "body":
			env.Body = val
		case "verify":
			if version < 2 || val != "yes" {
				return nil, formatErr("verify %q in a version %d file", trunc(val), version)
			}
			env.Verify = true
		case "rcpt":
			if len(env.Recipients) >= MaxRecipients {
				return nil, formatErr("more than %d recipients", MaxRecipients)
			}
			env.Recipients = append(env.Recipients, val)
		default:
			return nil, formatErr("unknown envelope field %q", trunc(key))
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, formatErr("data after the envelope's end")
	}
	if !seen["sender"] || !seen["sender-given"] {
		return nil, formatErr("no sender")
	}
	if version == 2 && !env.Verify {
		// The writer uses version 2 only for what needs it.
		return nil, formatErr("version 2 file without a version 2 field")
	}
	if err := env.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	return env, nil
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// ParseNotify reads sendmail -N's value (sendmail(1): "never", or a comma
// list of "success", "failure", "delay", any case) as the RFC 3461 §4.1
// NOTIFY set; "" is the zero set (the server's choice).
func ParseNotify(v string) (smtp.Notify, bool) {
	if v == "" {
		return 0, true
	}
	var n smtp.Notify
	for _, w := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		switch strings.ToLower(w) {
		case "never":
			n |= smtp.NotifyNever
		case "success":
			n |= smtp.NotifySuccess
		case "failure":
			n |= smtp.NotifyFailure
		case "delay":
			n |= smtp.NotifyDelay
		default:
			return 0, false
		}
	}
	if n == 0 || n&smtp.NotifyNever != 0 && n != smtp.NotifyNever {
		return 0, false
	}
	return n, true
}
