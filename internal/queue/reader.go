package queue

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"syscall"
)

// Message is an open queue file: its envelope, with each recipient's state
// from the state log, and its content, read from disk on demand.
type Message struct {
	ID       string
	Queue    string
	Envelope Envelope

	f          *os.File
	r          io.ReaderAt
	contentCRC uint32
	stateEnd   int64 // end of the valid state log
	fileSize   int64
	writable   bool // opened with OpenForUpdate
}

// parseFile reads the structure of a queue file of the given size: header,
// content length, envelope (checked against its sum) and state log. It does
// not read the content.
func parseFile(r io.ReaderAt, size int64) (*Message, error) {
	if size < contentStart+trailerLen {
		return nil, fmt.Errorf("file too short (%d bytes)", size)
	}
	var hdr [contentStart]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return nil, fmt.Errorf("read header: %w", noEOF(err))
	}
	v1 := string(hdr[:len(fileMagicV1)]) == fileMagicV1
	if !v1 && string(hdr[:len(fileMagic)]) != fileMagic {
		if string(hdr[:6]) == fileMagic[:6] {
			return nil, fmt.Errorf("unsupported queue file version %d", hdr[6])
		}
		return nil, errors.New("not a moat queue file")
	}
	if hdr[contentOff] != 'D' {
		return nil, errors.New("no content record")
	}
	clen := binary.BigEndian.Uint64(hdr[contentOff+1:])
	if clen > uint64(size-contentStart-trailerLen) {
		return nil, fmt.Errorf("content length %d beyond end of file", clen)
	}
	m := &Message{r: r, fileSize: size}
	m.Envelope.Size = int64(clen)
	envStart := contentStart + int64(clen)
	limit := size - envStart
	rr := &recReader{r: bufio.NewReaderSize(io.NewSectionReader(r, envStart, limit), 4096)}
	if err := decodeEnvelope(rr, &m.Envelope, limit, v1); err != nil {
		return nil, err
	}
	envCRC := rr.crc
	rr.sum = false
	var tr [8]byte
	if err := rr.readFull(tr[:]); err != nil {
		return nil, fmt.Errorf("trailer: %w", noEOF(err))
	}
	if got := binary.BigEndian.Uint32(tr[4:]); got != envCRC {
		return nil, fmt.Errorf("envelope checksum %08x, want %08x", envCRC, got)
	}
	m.contentCRC = binary.BigEndian.Uint32(tr[:4])
	m.stateEnd = envStart + decodeStateLog(rr, &m.Envelope, limit)
	return m, nil
}

// Content returns the message content. Reading it to the end checks its sum:
// a mismatch is returned instead of io.EOF, so a delivery agent never sends
// a damaged message as if it were whole.
func (m *Message) Content() io.Reader {
	return &crcReader{r: io.NewSectionReader(m.r, contentStart, m.Envelope.Size), want: m.contentCRC}
}

// Verify reads the whole content and checks its sum.
func (m *Message) Verify() error {
	if _, err := io.Copy(io.Discard, m.Content()); err != nil {
		return err
	}
	return nil
}

// Close releases the file.
func (m *Message) Close() error {
	if m.f == nil {
		return nil
	}
	err := m.f.Close()
	m.f = nil
	return err
}

type crcReader struct {
	r    io.Reader
	crc  uint32
	want uint32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, crcTable, p[:n])
	if err == io.EOF && c.crc != c.want {
		return n, fmt.Errorf("queue: content checksum %08x, want %08x", c.crc, c.want)
	}
	return n, err
}

// ReadFile parses a whole queue file held by r, including the content sum.
// It exists for tools (and the fuzz test) that have a file's bytes rather
// than a queue; on any damage it returns an error, never a partial envelope.
func ReadFile(r io.ReaderAt, size int64) (*Envelope, error) {
	m, err := parseFile(r, size)
	if err != nil {
		return nil, fmt.Errorf("queue file: %w", err)
	}
	if err := m.Verify(); err != nil {
		return nil, err
	}
	return &m.Envelope, nil
}

// Open opens message id in the named queue. The caller must Close it.
func (q *Queue) Open(name, id string) (*Message, error) {
	return q.open(name, id, syscall.O_RDONLY)
}

func (q *Queue) open(name, id string, mode int) (*Message, error) {
	p, err := q.path(name, id)
	if err != nil {
		return nil, err
	}
	f, err := openPlain(p, mode)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	m, err := openFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("queue: %s: %w", p, err)
	}
	m.ID, m.Queue = id, name
	m.writable = mode == syscall.O_RDWR
	return m, nil
}

func openFile(f *os.File) (*Message, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	m, err := parseFile(f, st.Size())
	if err != nil {
		return nil, err
	}
	m.f = f
	return m, nil
}

// openPlain opens a queue file with open(2) and os.NewFile instead of
// os.OpenFile, whose attempt to register a regular file with the network
// poller costs four fcntl(2)s and a failing epoll_ctl(2): the queue
// manager opens each message twice per delivery (to read it, then to
// record a result). Errors are *os.PathError, as os.OpenFile's.
func openPlain(p string, flags int) (*os.File, error) {
	fd, err := syscall.Open(p, flags|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}
