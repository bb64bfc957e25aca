package queue

// Queue file format, version 2 (version 1 files, without the 'Q' and
// 'L' records, are still read).
//
// One file per message, named by its queue ID, in one queue directory. All
// integers are big-endian or unsigned varints (encoding/binary Uvarint).
//
//	magic     "MOATQF\x01\n"          8 bytes; the 7th byte is the version
//	content   'D' len(8 bytes) bytes   the message as received (header and
//	                                   body, CRLF or LF as the writer chose)
//	envelope  records                  type(1) len(uvarint) payload
//	trailer   'Z' contentCRC(4) envelopeCRC(4)
//	state log records                  's' len(uvarint) payload crc(4)
//
// The content comes first so that a writer can stream it to disk before the
// envelope is final (cleanup learns the Message-ID from the header while the
// content passes through); its length is patched into the 'D' record at
// commit, and a reader skips it with one seek, so mailq never reads content.
//
// Envelope records (RFC 3461 for the DSN fields, RFC 5321 for the rest):
//
//	'T' arrival time, Unix microseconds (uvarint)
//	'S' sender; empty for the null sender <>
//	'R' recipient address; the 'O' and 'N' records that follow belong to it
//	'O' ORCPT of the preceding recipient ("rfc822;user@example")
//	'N' NOTIFY of the preceding recipient, a Notify bit set (uvarint)
//	'E' ENVID             'W' RET (FULL or HDRS)
//	'C' client hostname   'A' client address   'H' HELO/EHLO name
//	'P' protocol (SMTP, ESMTP, ESMTPSA, ...)   'U' SASL login name
//	'M' Message-ID        'F' flags, a Flags bit set (uvarint)
//	'Q' original address of the preceding recipient, before canonical
//	    and virtual alias rewriting (orig_to= in logs, X-Original-To:)
//	'L' content filter, "transport:nexthop" (postconf(5) content_filter,
//	    access(5) FILTER): the queue manager sends every recipient there
//	    (both since version 2)
//
// A reader rejects unknown record types: a version-1 reader cannot know
// whether an unknown record changes who receives the message, and guessing
// wrong loses or misdirects mail. New record types bump the version.
//
// The trailer makes the file complete: a file without it, or whose CRC-32C
// (Castagnoli) sums disagree, is corrupt. contentCRC covers the content
// bytes; envelopeCRC covers the envelope records and the trailer's 'Z'. The envelope sum is checked
// whenever the file is opened; the content sum when the content is read to
// its end (Message.Content) or by Verify, so that opening a large message
// does not read it.
//
// The state log is the only part that changes after commit: delivery appends
// one record per recipient whose fate is settled (payload: recipient index
// uvarint, state byte, reason text), each with a CRC-32C over its type,
// length and payload, and fsyncs it before acting on it (see
// UpdateRecipients). A torn last record, from a crash in the middle of an
// append, fails its sum; readers stop there and the next append truncates it.
// Appending instead of overwriting in place (as Postfix does) keeps the
// committed part of the file immutable and checksummed.
//
// The state log also holds 'w' records (payload: Unix microseconds,
// uvarint; same CRC), "the delay warning went out at" (delay_warning_time;
// Postfix's WARN record, which it zeroes in place after sending), so a
// message is warned about once, across restarts (warn.go). A reader that
// predates 'w' stops its log there: a downgrade forgets what follows.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"time"

	"moat/internal/smtp"
)

const (
	fileMagic = "MOATQF\x02\n"
	// fileMagicV1 is version 1's magic: the same format without the
	// 'Q' and 'L' records, read so that an upgrade keeps the mail queued
	// by the previous version.
	fileMagicV1  = "MOATQF\x01\n"
	contentOff   = int64(len(fileMagic)) // the 'D' record
	contentStart = contentOff + 9        // first content byte
	trailerLen   = 9
	// maxRecord bounds one envelope or state record, so that a damaged
	// length field cannot make a reader allocate gigabytes.
	maxRecord = 1 << 20
	// maxEnvelope bounds the whole envelope section for the same reason.
	maxEnvelope = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Flags are per-message flags kept in the envelope.
type Flags uint32

// Message flags.
const (
	// FlagHold asks that the message go to the hold queue instead of
	// incoming (access(5) HOLD, postsuper -h); smtpd sets it, the mover
	// acts on it.
	FlagHold Flags = 1 << iota
	// FlagSMTPUTF8 records that the client asked for SMTPUTF8 (RFC 6531
	// section 3.4), which delivery must honour when relaying.
	FlagSMTPUTF8
	// Flag8BitMIME records BODY=8BITMIME (RFC 6152).
	Flag8BitMIME
	// FlagRequireTLS records REQUIRETLS (RFC 8689).
	FlagRequireTLS
	// FlagVerify marks a sendmail -bv submission (sendmail(1): "send an
	// email report after verifying each recipient address"): the queue
	// manager asks each recipient's transport whether it would deliver,
	// mails the sender the report and delivers nothing, as Postfix's
	// DEL_REQ_FLAG_USR_VRFY does.
	FlagVerify
)

// RcptState is the delivery state of one recipient, kept in the state log.
type RcptState uint8

// Recipient states. Only RcptDelivered and RcptBounced are final: a crash after
// their record is durable never delivers to that recipient again.
const (
	// RcptPending: not yet settled (the initial state).
	RcptPending RcptState = iota
	// RcptDelivered: accepted by the next hop or mailbox; DSN success if asked.
	RcptDelivered
	// RcptBounced: permanently failed and the failure reported (or dropped
	// when NOTIFY=NEVER); never retried.
	RcptBounced
	// RcptDeferred: a temporary failure, retried later; the reason is shown by
	// mailq as Postfix shows it.
	RcptDeferred
)

// String names the state as mailq and the logs spell it.
func (s RcptState) String() string {
	switch s {
	case RcptPending:
		return "pending"
	case RcptDelivered:
		return "delivered"
	case RcptBounced:
		return "bounced"
	case RcptDeferred:
		return "deferred"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Recipient is one envelope recipient with its RFC 3461 parameters.
type Recipient struct {
	Address string
	ORCPT   string // RFC 3461 section 4.2, as "addr-type;address"
	// Notify is the NOTIFY set as smtp parsed it. Zero means the client
	// gave none, which is not NEVER: RFC 3461 section 4.1 lets the server
	// choose then (FAILURE, DELAY in practice).
	Notify smtp.Notify
	// Orig is the address the client gave, when rewriting
	// (canonical_maps, virtual_alias_maps, aliases) changed it: logged as
	// orig_to= and delivered as X-Original-To:. "" when Address is
	// original.
	Orig string
	// State and Reason come from the state log; writers leave them zero.
	State  RcptState
	Reason string
}

// Envelope is everything about a message except its content: what smtpd
// learned in the SMTP dialogue and what mailq shows.
type Envelope struct {
	Sender     string // "" is the null sender <>
	Recipients []Recipient
	EnvID      string // RFC 3461 section 4.4
	Ret        string // RFC 3461 section 4.3: "", "FULL" or "HDRS"
	ClientName string
	ClientAddr string
	Helo       string
	Protocol   string
	SASLUser   string
	MessageID  string
	Arrival    time.Time
	Flags      Flags
	// Filter is the content filter, "transport:nexthop"
	// (content_filter, FILTER): when set, the queue manager delivers
	// every recipient through it instead of by address (postconf(5)
	// content_filter).
	Filter string
	// Size is the content size in bytes; set by readers.
	Size int64
	// Warned is when the delay warning (delay_warning_time) was sent,
	// from the state log; zero when none was. Writers leave it zero.
	Warned time.Time
}

type recWriter struct {
	b []byte
}

func (w *recWriter) rec(typ byte, payload string) {
	w.b = append(w.b, typ)
	w.b = binary.AppendUvarint(w.b, uint64(len(payload)))
	w.b = append(w.b, payload...)
}

func (w *recWriter) recUint(typ byte, v uint64) {
	var tmp [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(tmp[:], v)
	w.rec(typ, string(tmp[:n]))
}

// validField rejects text that could not have come from an SMTP dialogue and
// that later consumers (log lines, headers) must never see.
func validField(name, s string) error {
	if len(s) > maxRecord/2 {
		return fmt.Errorf("%s too long (%d bytes)", name, len(s))
	}
	if strings.ContainsAny(s, "\x00\r\n") {
		return fmt.Errorf("%s contains NUL, CR or LF", name)
	}
	return nil
}

// encodeEnvelope returns the envelope records of e.
func encodeEnvelope(e *Envelope) ([]byte, error) {
	var w recWriter
	if e.Arrival.UnixMicro() < 0 {
		return nil, fmt.Errorf("arrival time %v before 1970", e.Arrival)
	}
	w.recUint('T', uint64(e.Arrival.UnixMicro()))
	strs := []struct {
		typ        byte
		name, text string
	}{
		{'S', "sender", e.Sender}, {'E', "ENVID", e.EnvID}, {'W', "RET", e.Ret},
		{'C', "client name", e.ClientName}, {'A', "client address", e.ClientAddr},
		{'H', "HELO name", e.Helo}, {'P', "protocol", e.Protocol},
		{'U', "SASL user", e.SASLUser}, {'M', "Message-ID", e.MessageID},
		{'L', "content filter", e.Filter},
	}
	for _, s := range strs {
		if err := validField(s.name, s.text); err != nil {
			return nil, err
		}
		if s.text != "" || s.typ == 'S' {
			w.rec(s.typ, s.text)
		}
	}
	if e.Ret != "" && e.Ret != "FULL" && e.Ret != "HDRS" {
		return nil, fmt.Errorf("RET %q: want FULL or HDRS (RFC 3461 section 4.3)", e.Ret)
	}
	if e.Flags != 0 {
		w.recUint('F', uint64(e.Flags))
	}
	if len(e.Recipients) == 0 {
		return nil, errors.New("no recipients")
	}
	for i, r := range e.Recipients {
		if r.Address == "" {
			return nil, fmt.Errorf("recipient %d: empty address", i)
		}
		if err := validField("recipient", r.Address); err != nil {
			return nil, err
		}
		if err := validField("ORCPT", r.ORCPT); err != nil {
			return nil, err
		}
		if err := validField("original recipient", r.Orig); err != nil {
			return nil, err
		}
		if !validNotify(uint64(r.Notify)) {
			// RFC 3461 section 4.1: NEVER excludes every other keyword.
			return nil, fmt.Errorf("recipient %d: bad NOTIFY %#x", i, r.Notify)
		}
		w.rec('R', r.Address)
		if r.ORCPT != "" {
			w.rec('O', r.ORCPT)
		}
		if r.Notify != 0 {
			w.recUint('N', uint64(r.Notify))
		}
		if r.Orig != "" {
			w.rec('Q', r.Orig)
		}
	}
	if len(w.b) > maxEnvelope {
		return nil, fmt.Errorf("envelope too large (%d bytes)", len(w.b))
	}
	return w.b, nil
}

// recReader reads records, counting the bytes consumed (for offsets) and
// summing them while sum is set (for the envelope and state-log checksums).
type recReader struct {
	r   *bufio.Reader
	n   int64 // bytes consumed
	crc uint32
	sum bool
}

func (r *recReader) readByte() (byte, error) {
	c, err := r.r.ReadByte()
	if err != nil {
		return 0, err
	}
	r.n++
	if r.sum {
		r.crc = crc32.Update(r.crc, crcTable, []byte{c})
	}
	return c, nil
}

func (r *recReader) readFull(b []byte) error {
	if _, err := io.ReadFull(r.r, b); err != nil {
		return err
	}
	r.n += int64(len(b))
	if r.sum {
		r.crc = crc32.Update(r.crc, crcTable, b)
	}
	return nil
}

func (r *recReader) readUvarint() (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := r.readByte()
		if err != nil {
			return 0, err
		}
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, errors.New("varint overflows")
			}
			return x | uint64(c)<<s, nil
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, errors.New("varint overflows")
}

// readPayload reads a record length and payload, refusing lengths beyond
// maxRecord or beyond the limit left in the file.
func (r *recReader) readPayload(limit int64) ([]byte, error) {
	n, err := r.readUvarint()
	if err != nil {
		return nil, err
	}
	if n > maxRecord || int64(n) > limit-r.n {
		return nil, fmt.Errorf("record length %d out of range", n)
	}
	b := make([]byte, n)
	if err := r.readFull(b); err != nil {
		return nil, err
	}
	return b, nil
}

func payloadUint(b []byte) (uint64, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) {
		return 0, errors.New("bad number")
	}
	return v, nil
}

// decodeEnvelope reads envelope records up to and including the trailer's
// type byte, from r positioned just after the content. limit is the file
// size relative to r's start.
// Version 1 files (v1 set) have no 'Q' or 'L' records.
func decodeEnvelope(r *recReader, e *Envelope, limit int64, v1 bool) error {
	r.sum = true
	seen := map[byte]bool{}
	var cur *Recipient
	for {
		if r.n > maxEnvelope {
			return errors.New("envelope too large")
		}
		typ, err := r.readByte()
		if err != nil {
			return fmt.Errorf("envelope: %w", noEOF(err))
		}
		if typ == 'Z' {
			break
		}
		b, err := r.readPayload(limit)
		if err != nil {
			return fmt.Errorf("envelope record %q: %w", typ, noEOF(err))
		}
		if v1 && (typ == 'Q' || typ == 'L') {
			return fmt.Errorf("envelope record %q in a version 1 file", typ)
		}
		switch typ {
		case 'R', 'O', 'N', 'Q':
		default:
			if seen[typ] {
				return fmt.Errorf("envelope record %q repeated", typ)
			}
			seen[typ] = true
		}
		s := string(b)
		switch typ {
		case 'T', 'F', 'N':
			v, err := payloadUint(b)
			if err != nil {
				return fmt.Errorf("envelope record %q: %w", typ, err)
			}
			switch typ {
			case 'T':
				if v > 1<<62 {
					return errors.New("arrival time out of range")
				}
				e.Arrival = time.UnixMicro(int64(v))
			case 'F':
				e.Flags = Flags(v)
			case 'N':
				if cur == nil {
					return errors.New("NOTIFY record without a recipient")
				}
				if !validNotify(v) {
					return fmt.Errorf("bad NOTIFY %#x", v)
				}
				cur.Notify = smtp.Notify(v)
			}
			continue
		}
		name := fmt.Sprintf("record %q", typ)
		if err := validField(name, s); err != nil {
			return err
		}
		switch typ {
		case 'S':
			e.Sender = s
		case 'R':
			if s == "" {
				return errors.New("empty recipient")
			}
			e.Recipients = append(e.Recipients, Recipient{Address: s})
			cur = &e.Recipients[len(e.Recipients)-1]
		case 'O':
			if cur == nil {
				return errors.New("ORCPT record without a recipient")
			}
			cur.ORCPT = s
		case 'Q':
			if cur == nil {
				return errors.New("original recipient record without a recipient")
			}
			cur.Orig = s
		case 'L':
			e.Filter = s
		case 'E':
			e.EnvID = s
		case 'W':
			e.Ret = s
		case 'C':
			e.ClientName = s
		case 'A':
			e.ClientAddr = s
		case 'H':
			e.Helo = s
		case 'P':
			e.Protocol = s
		case 'U':
			e.SASLUser = s
		case 'M':
			e.MessageID = s
		default:
			return fmt.Errorf("unknown envelope record type %q", typ)
		}
	}
	if !seen['T'] || !seen['S'] || len(e.Recipients) == 0 {
		return errors.New("envelope lacks arrival time, sender or recipients")
	}
	return nil
}

// validNotify accepts the NOTIFY sets RFC 3461 section 4.1 allows: NEVER
// alone, or any of SUCCESS, FAILURE and DELAY.
func validNotify(v uint64) bool {
	if v > uint64(smtp.NotifyDelay<<1-1) {
		return false
	}
	return v&uint64(smtp.NotifyNever) == 0 || v == uint64(smtp.NotifyNever)
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// stateRecord encodes one state log record.
func stateRecord(index int, st RcptState, reason string) []byte {
	var p []byte
	p = binary.AppendUvarint(p, uint64(index))
	p = append(p, byte(st))
	p = append(p, reason...)
	b := []byte{'s'}
	b = binary.AppendUvarint(b, uint64(len(p)))
	b = append(b, p...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// decodeStateLog applies state records to e's recipients and returns the
// offset (in r's count) where the valid records end; a torn or damaged tail
// ends the log.
func decodeStateLog(r *recReader, e *Envelope, limit int64) int64 {
	valid := r.n
	for {
		r.sum = true
		r.crc = 0
		typ, err := r.readByte()
		if err != nil || typ != 's' && typ != warnType {
			return valid
		}
		p, err := r.readPayload(limit)
		if err != nil {
			return valid
		}
		got := r.crc
		var sum [4]byte
		if err := r.readFull(sum[:]); err != nil || binary.BigEndian.Uint32(sum[:]) != got {
			return valid
		}
		if typ == warnType {
			if !decodeWarn(p, e) {
				return valid
			}
			valid = r.n
			continue
		}
		idx, n := binary.Uvarint(p)
		if n <= 0 || n >= len(p) || idx >= uint64(len(e.Recipients)) {
			return valid
		}
		st := RcptState(p[n])
		if st > RcptDeferred {
			return valid
		}
		rc := &e.Recipients[idx]
		if rc.State == RcptDelivered || rc.State == RcptBounced {
			// Final states stay final, whatever a later record says.
		} else {
			rc.State = st
			rc.Reason = string(p[n+1:])
		}
		valid = r.n
	}
}
