package asuser

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// The executor's protocol (Runner ⇄ Serve), one request at a time on a
// connection (a connection carries further requests only after a delivery
// or read whose content was read to its end; serveConn): the client sends
// one JSON request line, then, for a delivery or a
// command, the message as frames (a 4-byte big-endian length, then that
// many bytes) ended by an empty frame; the executor answers one JSON line.
// The empty frame plays the commit line's part: a connection that ends
// before it is a client that died mid-message, and the child is killed
// rather than given a short message.

// The operations a request names.
const (
	opDeliver = "deliver"
	opRun     = "run"
	opRead    = "read"
	opCommit  = "commit"
)

// Bounds on what the executor (root) accepts from its less-privileged
// client, and on what the client reads back.
const (
	maxRequest     = 1 << 20  // the request line
	maxFrame       = 64 << 10 // one content frame
	maxStrings     = 4096     // argv and environment entries, each
	maxGroups      = 1024     // supplementary groups
	maxOutputLimit = 1 << 20  // a command's kept output
)

// request is one executor request. Exactly one of Job, Cmd, Read and
// Commit is set, the one Op names.
type request struct {
	Op     string
	Creds  Creds
	Job    *Job         `json:",omitempty"`
	Cmd    *wireCommand `json:",omitempty"`
	Read   *wireRead    `json:",omitempty"`
	Commit *wireCommit  `json:",omitempty"`
	// Probe, with a Job, names files read first: the job is done only
	// when none exists (DeliverUnlessFile).
	Probe *wireProbe `json:",omitempty"`
}

// wireCommand is a Command without its standard input, which follows as
// frames.
type wireCommand struct {
	Argv        []string
	Env         []string
	Dir         string
	TimeLimit   time.Duration
	OutputLimit int
}

// wireRead is a ReadFile request.
type wireRead struct {
	Path string
	ReadOptions
}

// response is the executor's answer: Result for a delivery or a read,
// Run for a command, Error when the request itself was refused.
//
// Keep says the executor reads the next request on this connection; a
// client sends one there only then (the executor closes the connection
// otherwise, and may not have done so yet when the client reads the
// answer).
type response struct {
	Result *wireResult `json:",omitempty"`
	Run    *wireRun    `json:",omitempty"`
	Error  string      `json:",omitempty"`
	Keep   bool        `json:",omitempty"`
	// Found answers a probe that found a file: the job was not done.
	Found *wireFound `json:",omitempty"`
}

// wireRun is a CommandResult on the wire.
type wireRun struct {
	Status, Signal int
	TimedOut       bool
	Output         string
	Err            string `json:",omitempty"`
}

func runOf(r CommandResult) *wireRun {
	w := &wireRun{Status: r.Status, Signal: r.Signal, TimedOut: r.TimedOut, Output: r.Output}
	if r.Err != nil {
		w.Err = r.Err.Error()
	}
	return w
}

func (w *wireRun) result() CommandResult {
	r := CommandResult{Status: w.Status, Signal: w.Signal, TimedOut: w.TimedOut, Output: w.Output}
	if w.Err != "" {
		r.Err = errors.New(w.Err)
	}
	return r
}

// readRequest reads and checks the request line: a parser of a
// less-privileged peer's input, bounded in size and strict in shape.
func readRequest(br *bufio.Reader) (request, error) {
	line, err := readLine(br, maxRequest)
	if err != nil {
		return request{}, fmt.Errorf("reading request: %w", err)
	}
	return parseRequest(line)
}

// readLine reads one '\n'-terminated line of at most limit bytes.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > limit {
			return nil, fmt.Errorf("line longer than %d bytes", limit)
		}
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// parseRequest decodes a request line and refuses anything but the
// shapes a Runner sends.
func parseRequest(line []byte) (request, error) {
	var r request
	dec := json.NewDecoder(strings.NewReader(string(line)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return request{}, fmt.Errorf("decoding request: %v", err)
	}
	if len(r.Creds.Groups) > maxGroups {
		return request{}, fmt.Errorf("%d supplementary groups (at most %d)", len(r.Creds.Groups), maxGroups)
	}
	set := 0
	for _, p := range []bool{r.Job != nil, r.Cmd != nil, r.Read != nil, r.Commit != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return request{}, errors.New("a request carries exactly one of job, command, read and commit")
	}
	if r.Probe != nil && r.Op != opDeliver {
		return request{}, errors.New("only a deliver request reads files first")
	}
	switch r.Op {
	case opDeliver:
		if r.Job == nil {
			return request{}, errors.New("deliver request without a job")
		}
		if err := r.Job.validate(); err != nil {
			return request{}, err
		}
		if r.Probe != nil {
			if err := r.Probe.validate(); err != nil {
				return request{}, err
			}
		}
	case opRun:
		if r.Cmd == nil {
			return request{}, errors.New("run request without a command")
		}
		if err := r.Cmd.validate(); err != nil {
			return request{}, err
		}
	case opRead:
		if r.Read == nil {
			return request{}, errors.New("read request without a path")
		}
		w := wireJob{Job: Job{Kind: kindRead, Path: r.Read.Path}, Limit: r.Read.Limit}
		if err := w.validate(); err != nil {
			return request{}, err
		}
	case opCommit:
		if r.Commit == nil {
			return request{}, errors.New("commit request without names")
		}
		if err := r.Commit.validate(); err != nil {
			return request{}, err
		}
	default:
		return request{}, fmt.Errorf("unknown operation %q", r.Op)
	}
	return r, nil
}

// validate checks a command's shape; Run itself refuses uid 0 and NUL
// bytes in arguments.
func (c *wireCommand) validate() error {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return errors.New("empty command")
	}
	if len(c.Argv) > maxStrings || len(c.Env) > maxStrings {
		return fmt.Errorf("more than %d arguments or environment entries", maxStrings)
	}
	for _, kv := range c.Env {
		if strings.IndexByte(kv, 0) >= 0 {
			return errors.New("NUL byte in the environment")
		}
	}
	if c.Dir != "" && (!filepath.IsAbs(c.Dir) || strings.IndexByte(c.Dir, 0) >= 0) {
		return fmt.Errorf("working directory %q is not an absolute path", c.Dir)
	}
	if c.TimeLimit < 0 {
		return fmt.Errorf("negative time limit %v", c.TimeLimit)
	}
	if c.OutputLimit < 0 || c.OutputLimit > maxOutputLimit {
		return fmt.Errorf("output limit %d out of range", c.OutputLimit)
	}
	return nil
}

// appendFrames appends content of at most maxFrame bytes to b as one frame
// and the end frame: what frameWriter and Close send, in one buffer.
func appendFrames(b, content []byte) []byte {
	if len(content) > 0 {
		b = binary.BigEndian.AppendUint32(b, uint32(len(content)))
		b = append(b, content...)
	}
	return binary.BigEndian.AppendUint32(b, 0)
}

// frameWriter sends content as frames; Close sends the empty end frame.
type frameWriter struct{ w io.Writer }

func (f frameWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		c := b[:min(len(b), maxFrame)]
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(c)))
		if _, err := f.w.Write(hdr[:]); err != nil {
			return n, err
		}
		m, err := f.w.Write(c)
		n += m
		if err != nil {
			return n, err
		}
		b = b[len(c):]
	}
	return n, nil
}

func (f frameWriter) Close() error {
	_, err := f.w.Write([]byte{0, 0, 0, 0})
	return err
}

// errIncomplete is the executor's read error when the client's stream
// ends before its end frame.
var errIncomplete = errors.New("message incomplete: the client went away before the end of the message")

// frameReader reads the content frames; at the end frame it returns
// io.EOF and calls ended once (the executor then watches the connection
// for its client's death).
type frameReader struct {
	r      *bufio.Reader
	left   uint32
	done   bool
	ended  func()
	failed error
}

func (f *frameReader) Read(b []byte) (int, error) {
	if f.failed != nil {
		return 0, f.failed
	}
	if f.done {
		return 0, io.EOF
	}
	for f.left == 0 {
		var hdr [4]byte
		if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
			f.failed = errIncomplete
			return 0, f.failed
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			f.done = true
			if f.ended != nil {
				f.ended()
			}
			return 0, io.EOF
		}
		if n > maxFrame {
			f.failed = fmt.Errorf("content frame of %d bytes (at most %d)", n, maxFrame)
			return 0, f.failed
		}
		f.left = n
	}
	if uint32(len(b)) > f.left {
		b = b[:f.left]
	}
	n, err := f.r.Read(b)
	f.left -= uint32(n)
	if err != nil && n == 0 {
		f.failed = errIncomplete
		return 0, f.failed
	}
	return n, nil
}
