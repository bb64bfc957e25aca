// Package wire is the framed protocol between proxy: table clients (in
// package maps, inside jailed daemons) and the proxymap(8) server. It plays
// the part of Postfix's attribute protocol for the proxymap requests
// (proxymap(8): "open", "lookup", "update", "delete"), in a form moat owns:
// a length-prefixed binary frame, so no value needs quoting and a truncated
// or oversized frame is detected before it is trusted.
//
// It is a package of its own because both sides need it and maps must not
// import the server (which imports maps).
//
// A frame is a 4-byte big-endian payload length followed by the payload.
// A request payload is: version, op, flags, then three strings (table,
// key, value), each a uvarint length and its bytes. A reply payload is:
// version, status, flags, then one string (the value, or the reason of a
// failure). Nothing may follow the last string.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the first byte of every payload, so a client and server from
// different builds fail loudly instead of misreading each other.
const Version = 1

// MaxFrame bounds a payload. Keys are short, but a table value (an alias
// expansion, a long restriction list) may be long; a megabyte is far above
// any real one and still small enough that a bad peer cannot make the other
// side allocate without bound.
const MaxFrame = 1 << 20

// Op is a request type, Postfix's PROXY_REQ_* names (proxymap(8)).
type Op byte

// The requests. Update and Delete exist so that a proxywrite-style request
// gets Postfix's refusal rather than "unrecognized request".
const (
	OpOpen   Op = 'O'
	OpLookup Op = 'L'
	OpUpdate Op = 'U'
	OpDelete Op = 'D'
)

// String names the op as Postfix's request attribute does.
func (o Op) String() string {
	switch o {
	case OpOpen:
		return "open"
	case OpLookup:
		return "lookup"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("op-%d", byte(o))
}

// Status is a request's completion status, proxymap(8)'s OK, NOKEY, RETRY,
// BAD and DENY.
type Status byte

// The completion statuses (proxymap(8) "request completion status").
const (
	StatusOK    Status = 0 // found; Value holds the result
	StatusNoKey Status = 1 // the key is not in the table
	StatusRetry Status = 2 // temporary failure; Value says why
	StatusBad   Status = 3 // malformed request
	StatusDeny  Status = 4 // table not approved in proxy_read_maps
)

// String names the status as proxymap(8) does.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusNoKey:
		return "NOKEY"
	case StatusRetry:
		return "RETRY"
	case StatusBad:
		return "BAD"
	case StatusDeny:
		return "DENY"
	}
	return fmt.Sprintf("status-%d", byte(s))
}

// Flags carry the per-request key handling (Postfix passes its dict flags
// with every request for the same reason: one server serves clients that
// fold keys differently) and, in replies, the table's kind.
type Flags byte

// The flags.
const (
	FlagFold    Flags = 1 << 0 // fold keys (DICT_FLAG_FOLD_FIX)
	FlagUTF8    Flags = 1 << 1 // fold with Unicode rules (smtputf8_enable)
	FlagPattern Flags = 1 << 2 // reply: the table matches patterns (regexp, pcre, cidr)
)

// Request is one client request.
type Request struct {
	Op    Op
	Flags Flags
	Table string // "type:name", without the "proxy:" prefix
	Key   string
	Value string // update only
}

// Reply is the server's answer to one Request.
type Reply struct {
	Status Status
	Flags  Flags
	Value  string
}

// ErrFrame marks a malformed frame or payload. The connection carrying it
// cannot be trusted to be in sync any more and must be closed.
var ErrFrame = errors.New("proxymap protocol error")

func frameErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFrame, fmt.Sprintf(format, args...))
}

// AppendRequest appends r's frame to buf.
func AppendRequest(buf []byte, r Request) []byte {
	n := 3 + strLen(r.Table) + strLen(r.Key) + strLen(r.Value)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	buf = append(buf, Version, byte(r.Op), byte(r.Flags))
	buf = appendStr(buf, r.Table)
	buf = appendStr(buf, r.Key)
	return appendStr(buf, r.Value)
}

// AppendReply appends r's frame to buf.
func AppendReply(buf []byte, r Reply) []byte {
	n := 3 + strLen(r.Value)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	buf = append(buf, Version, byte(r.Status), byte(r.Flags))
	return appendStr(buf, r.Value)
}

// strLen is the encoded size of s: its uvarint length prefix and bytes.
func strLen(s string) int {
	n := 1
	for v := uint64(len(s)); v >= 0x80; v >>= 7 {
		n++
	}
	return n + len(s)
}

func appendStr(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// WriteRequest sends r in one write, so concurrent writers on different
// connections never interleave and a frame is never half-sent by us.
func WriteRequest(w io.Writer, r Request) error {
	buf := AppendRequest(nil, r)
	if len(buf)-4 > MaxFrame {
		return frameErr("request of %d bytes exceeds %d", len(buf)-4, MaxFrame)
	}
	_, err := w.Write(buf)
	return err
}

// WriteReply sends r in one write. A value too long for a frame is
// replaced by a temporary failure, so the client defers instead of
// receiving a frame it must refuse.
func WriteReply(w io.Writer, r Reply) error {
	buf := AppendReply(nil, r)
	if len(buf)-4 > MaxFrame {
		buf = AppendReply(buf[:0], Reply{Status: StatusRetry, Flags: r.Flags,
			Value: fmt.Sprintf("value of %d bytes exceeds the proxymap frame limit", len(r.Value))})
	}
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame and returns its payload. io.EOF means the peer
// closed cleanly between frames; a frame cut short is io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return nil, frameErr("frame of %d bytes exceeds %d", n, MaxFrame)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return p, nil
}

// ReadRequest reads and decodes one request frame.
func ReadRequest(r io.Reader) (Request, error) {
	p, err := ReadFrame(r)
	if err != nil {
		return Request{}, err
	}
	return DecodeRequest(p)
}

// ReadReply reads and decodes one reply frame.
func ReadReply(r io.Reader) (Reply, error) {
	p, err := ReadFrame(r)
	if err != nil {
		return Reply{}, err
	}
	return DecodeReply(p)
}

// DecodeRequest parses a request payload. An unknown op is not an error
// here: the server answers it with BAD, as Postfix answers an unrecognized
// request, and the connection stays usable.
func DecodeRequest(p []byte) (Request, error) {
	if len(p) < 3 {
		return Request{}, frameErr("short request (%d bytes)", len(p))
	}
	if p[0] != Version {
		return Request{}, frameErr("protocol version %d, want %d", p[0], Version)
	}
	r := Request{Op: Op(p[1]), Flags: Flags(p[2])}
	d := decoder{p: p[3:]}
	r.Table = d.str("table")
	r.Key = d.str("key")
	r.Value = d.str("value")
	if err := d.finish(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// DecodeReply parses a reply payload. An unknown status is an error: the
// client cannot know what it means, and guessing could turn a refusal into
// an answer.
func DecodeReply(p []byte) (Reply, error) {
	if len(p) < 3 {
		return Reply{}, frameErr("short reply (%d bytes)", len(p))
	}
	if p[0] != Version {
		return Reply{}, frameErr("protocol version %d, want %d", p[0], Version)
	}
	r := Reply{Status: Status(p[1]), Flags: Flags(p[2])}
	if r.Status > StatusDeny {
		return Reply{}, frameErr("unknown status %d", p[1])
	}
	d := decoder{p: p[3:]}
	r.Value = d.str("value")
	if err := d.finish(); err != nil {
		return Reply{}, err
	}
	return r, nil
}

// decoder reads length-prefixed strings, remembering the first problem.
type decoder struct {
	p   []byte
	err error
}

func (d *decoder) str(what string) string {
	if d.err != nil {
		return ""
	}
	n, k := binary.Uvarint(d.p)
	if k <= 0 {
		d.err = frameErr("bad length of %s", what)
		return ""
	}
	d.p = d.p[k:]
	if n > uint64(len(d.p)) {
		d.err = frameErr("%s of %d bytes overruns the frame (%d left)", what, n, len(d.p))
		return ""
	}
	s := string(d.p[:n])
	d.p = d.p[n:]
	return s
}

func (d *decoder) finish() error {
	if d.err != nil {
		return d.err
	}
	if len(d.p) != 0 {
		return frameErr("%d bytes after the last field", len(d.p))
	}
	return nil
}
