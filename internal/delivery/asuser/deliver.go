package asuser

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"moat/internal/delivery"
)

// The child's extra descriptors (exec.Cmd.ExtraFiles start at 3).
const (
	jobFD    = 3 // parent → child: the job, then the commit line
	resultFD = 4 // child → parent: the outcome
)

// commitLine is what the parent writes on the job pipe once the whole
// message has gone down the child's standard input. Without it the child
// could not tell the end of the message from its parent dying mid-stream
// (both close the pipe), and would deliver half a message.
const commitLine = "commit\n"

// Bounds on what each side reads from the other: a job and an outcome are
// a few hundred bytes; a child's stderr is for a crash's first words.
const (
	maxJob    = 64 << 10
	maxResult = 64 << 10
	maxStderr = 512
)

// wireJob is the job as it crosses to the child.
type wireJob struct {
	Job
	// UID is the uid the child must run as when CheckUID is set (the
	// parent was root and asked for it), checked against getuid() and
	// geteuid() before anything is written.
	UID      uint32
	CheckUID bool
	// Limit and Follow are a kindRead job's ReadOptions.
	Limit  int64 `json:",omitempty"`
	Follow bool  `json:",omitempty"`
}

// wireResult is the child's outcome. Only OK=true is a delivery.
type wireResult struct {
	OK    bool
	Path  string // the Maildir file's path
	DSN   string
	Text  string
	Errno int // the underlying errno, 0 if none
	// Data, FileUID, FileGID and FileMode answer a kindRead job.
	Data     []byte `json:",omitempty"`
	FileUID  uint32 `json:",omitempty"`
	FileGID  uint32 `json:",omitempty"`
	FileMode uint32 `json:",omitempty"`
}

// resultLimit bounds the child's outcome record: a few hundred bytes,
// or the file's content in base64 for a read.
func resultLimit(w wireJob) int64 {
	if w.Kind == kindRead {
		return maxResult + 2*w.Limit
	}
	return maxResult
}

// Deliver runs job with creds in a short-lived child (self is the moat
// binary; the child runs `self delivery-child`), streaming content to it.
// A process that is not root cannot change identity and runs the child as
// itself (a development set-up). Every failure is a *delivery.Error:
// the child's own classification, or 4.3.0 when the child could not run.
//
// Creds.UID 0 runs the child as root: that is how local(8) delivers to
// root's own mailbox (it runs the mailbox write with the recipient's
// rights, and the recipient is root). Every other account's mailbox is
// written with that account's uid, gid and groups only.
func Deliver(ctx context.Context, self string, creds Creds, job Job, content io.Reader) error {
	_, err := DeliverFile(ctx, self, creds, job, content)
	return err
}

// DeliverFile is Deliver that also returns the path of the file the child
// wrote (the new Maildir file; the mbox file for KindMbox), for logs and
// tests.
func DeliverFile(ctx context.Context, self string, creds Creds, job Job, content io.Reader) (string, error) {
	// Root can give one thread the recipient's identity: far cheaper
	// than a child process (deliverOnThread).
	return deliverFile(ctx, self, creds, job, content, os.Geteuid() == 0)
}

// deliverFileIn is DeliverFile for the executor, whose credentialed
// threads come from pool.
func deliverFileIn(ctx context.Context, pool *threadPool, self string, creds Creds, job Job, content io.Reader) (string, error) {
	if os.Geteuid() != 0 {
		return DeliverFile(ctx, self, creds, job, content)
	}
	if err := job.validate(); err != nil {
		return "", childFailed(err)
	}
	return deliverOnThread(ctx, pool, creds, job, content)
}

// deliverFile is DeliverFile with the choice between a credentialed
// thread and a child process made by the caller (the tests exercise both).
func deliverFile(ctx context.Context, self string, creds Creds, job Job, content io.Reader, onThread bool) (string, error) {
	if err := job.validate(); err != nil {
		return "", childFailed(err)
	}
	if onThread {
		return deliverOnThread(ctx, nil, creds, job, content)
	}
	r, err := runChild(ctx, self, creds, wireJob{Job: job}, content)
	if err != nil {
		return "", err
	}
	return r.Path, nil
}

// runChild runs `self delivery-child` with creds for one wire job,
// streaming content to its standard input, and returns its success
// record; every failure is a *delivery.Error (see Deliver).
func runChild(ctx context.Context, self string, creds Creds, w wireJob, content io.Reader) (wireResult, error) {
	w.UID, w.CheckUID = creds.UID, os.Geteuid() == 0
	jobBytes, err := jsonLine(w)
	if err != nil {
		return wireResult{}, childFailed(fmt.Errorf("encoding job: %w", err))
	}
	p, err := openPipes()
	if err != nil {
		return wireResult{}, childFailed(err)
	}
	defer p.closeAll()
	cmd := &exec.Cmd{
		Path:        self,
		Args:        []string{self, ChildVerb},
		Env:         []string{},
		Dir:         "/",
		Stdin:       p.inR,
		Stderr:      p.errW,
		ExtraFiles:  []*os.File{p.jobR, p.resW},
		SysProcAttr: sysProcAttr(creds),
	}
	if err := cmd.Start(); err != nil {
		return wireResult{}, childFailed(fmt.Errorf("cannot execute %s: %w", self, err))
	}
	p.closeChildEnds()
	pgid := cmd.Process.Pid
	kill := func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) }

	var wg sync.WaitGroup
	var readErr error
	wg.Add(3)
	go func() {
		defer wg.Done()
		readErr = p.feed(jobBytes, content, kill)
	}()
	var result []byte
	go func() {
		defer wg.Done()
		result, _ = io.ReadAll(io.LimitReader(p.resR, resultLimit(w)))
		_, _ = io.Copy(io.Discard, p.resR)
	}()
	var stderr []byte
	go func() {
		defer wg.Done()
		stderr = collect(p.errR, maxStderr)
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	var waitErr error
	var ctxErr error
	select {
	case waitErr = <-waitDone:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		kill()
		waitErr = <-waitDone
	}
	// The child is gone: release a feeder stuck on a full pipe. The
	// child runs no processes of its own, so the readers see EOF now.
	p.inW.Close()
	p.jobW.Close()
	wg.Wait()

	switch {
	case ctxErr != nil:
		return wireResult{}, childFailed(fmt.Errorf("delivery interrupted: %w", ctxErr))
	case readErr != nil:
		return wireResult{}, &delivery.Error{DSN: "4.3.0", Text: string(w.Kind) + " delivery failed: error reading message: " + delivery.Strerror(readErr), Err: readErr}
	}
	return decodeResult(result, waitErr, stderr)
}

// decodeResult turns the child's outcome record into Deliver's answer.
// Success needs both an explicit OK record and a clean exit; a failure
// record keeps the child's classification, with a DSN that can only say
// 4.x.x or 5.x.x.
func decodeResult(result []byte, waitErr error, stderr []byte) (wireResult, error) {
	var r wireResult
	if len(result) == 0 || json.Unmarshal(result, &r) != nil {
		return wireResult{}, childFailed(exitError(waitErr, stderr))
	}
	if r.OK {
		if waitErr != nil {
			// A success record followed by a crash: the file may be
			// whole, but "never a success without the child's
			// explicit success" includes its clean exit.
			return wireResult{}, childFailed(exitError(waitErr, stderr))
		}
		return r, nil
	}
	return wireResult{}, r.err()
}

// err rebuilds a failure record's *delivery.Error, with a DSN that can
// only say 4.x.x or 5.x.x (a child cannot turn a failure into a success
// code).
func (r wireResult) err() error {
	e := &delivery.Error{DSN: r.DSN, Text: r.Text}
	if !validDSN(e.DSN) {
		e.DSN = "4.3.0"
	}
	if e.Text == "" {
		e.Text = "delivery child failed: no reason given"
	}
	if r.Errno > 0 && r.Errno < 4096 {
		e.Err = syscall.Errno(r.Errno)
	} else {
		e.Err = errors.New(e.Text)
	}
	return e
}

// childFailedPrefix starts the text of every childFailed error (Failed).
const childFailedPrefix = "delivery child failed: "

// childFailed is the outcome when the child produced none of its own:
// deferred, since a crash says nothing about the message or the mailbox.
func childFailed(err error) *delivery.Error {
	return &delivery.Error{DSN: "4.3.0", Text: childFailedPrefix + err.Error(), Err: err}
}

// exitError describes how the child ended, with the start of what it said
// on stderr (a Go runtime panic, a fatal message).
func exitError(waitErr error, stderr []byte) error {
	msg := "no outcome reported"
	if waitErr != nil {
		msg = waitErr.Error()
	}
	if s := strings.TrimSpace(strings.ToValidUTF8(string(stderr), "?")); s != "" {
		s = strings.Join(strings.Fields(s), " ")
		msg += ": " + s
	}
	return errors.New(msg)
}

// validDSN accepts the class digits 4 and 5 only: a child cannot turn a
// failure into a success code.
func validDSN(s string) bool {
	return len(s) >= 5 && (s[0] == '4' || s[0] == '5') && s[1] == '.'
}

// pipes are the four pipes between parent and child: stdin (content),
// the job, the result and stderr.
type pipes struct {
	inR, inW, jobR, jobW, resR, resW, errR, errW *os.File
}

func openPipes() (*pipes, error) {
	p := &pipes{}
	for _, pair := range [][2]**os.File{{&p.inR, &p.inW}, {&p.jobR, &p.jobW}, {&p.resR, &p.resW}, {&p.errR, &p.errW}} {
		r, w, err := os.Pipe()
		if err != nil {
			p.closeAll()
			return nil, fmt.Errorf("pipe: %w", err)
		}
		*pair[0], *pair[1] = r, w
	}
	return p, nil
}

// closeChildEnds drops our copies of the child's ends, so we see EOF
// when the child exits.
func (p *pipes) closeChildEnds() {
	for _, f := range []*os.File{p.inR, p.jobR, p.resW, p.errW} {
		f.Close()
	}
}

func (p *pipes) closeAll() {
	for _, f := range []*os.File{p.inR, p.inW, p.jobR, p.jobW, p.resR, p.resW, p.errR, p.errW} {
		if f != nil {
			f.Close()
		}
	}
}

// feed sends the job, streams the content, and commits. A failure to read
// the content kills the child before its stdin closes, so it never takes
// a short read for the end of the message; the read error is returned.
// Write errors (the child died) are not ours to report: the missing
// outcome says it.
func (p *pipes) feed(job []byte, content io.Reader, kill func()) error {
	if _, err := p.jobW.Write(job); err != nil {
		return nil
	}
	src := &errReader{r: content}
	_, err := io.Copy(p.inW, src)
	if src.err != nil {
		kill()
		return src.err
	}
	if err != nil {
		return nil
	}
	if err := p.inW.Close(); err != nil {
		return nil
	}
	_, _ = p.jobW.Write([]byte(commitLine))
	p.jobW.Close()
	return nil
}

// errReader remembers a read error, to tell it from a write error after
// io.Copy.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(b []byte) (int, error) {
	if e.r == nil {
		return 0, io.EOF
	}
	n, err := e.r.Read(b)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// validate is the shape check both sides make: a known kind and an
// absolute path without NUL (open(2) would cut the name at it).
func (j *Job) validate() error {
	switch j.Kind {
	case KindMaildir, KindMbox:
	default:
		return fmt.Errorf("unknown mailbox kind %q", j.Kind)
	}
	if !strings.HasPrefix(j.Path, "/") {
		return fmt.Errorf("mailbox path %q is not absolute", j.Path)
	}
	if strings.IndexByte(j.Path, 0) >= 0 {
		return fmt.Errorf("mailbox path %q contains NUL", j.Path)
	}
	return nil
}

// newCommitReader wraps the child's stdin: at its end, the parent must
// have written the commit line on the job pipe; otherwise the end is a
// dead parent and the message is incomplete.
func newCommitReader(in io.Reader, job *bufio.Reader) io.Reader {
	return &commitReader{in: in, job: job}
}

type commitReader struct {
	in  io.Reader
	job *bufio.Reader
}

// errNoCommit is the child's read error when its parent vanished mid-message.
var errNoCommit = errors.New("message incomplete: parent ended before the end of the message")

func (c *commitReader) Read(b []byte) (int, error) {
	n, err := c.in.Read(b)
	if err == io.EOF {
		line, lerr := c.job.ReadString('\n')
		if lerr != nil || line != commitLine {
			return n, errNoCommit
		}
	}
	return n, err
}

// jsonLine encodes v on one line (json.Marshal never emits a newline).
func jsonLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(b, '\n'), err
}
