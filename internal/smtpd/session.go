package smtpd

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"moat/internal/dns"
	"moat/internal/maillog"
	"moat/internal/queue"
	"moat/internal/smtp"
)

// Buffer sizes keep an idle session small (issue 3's benchmark wants under
// 64 KB per idle connection): commands are short, and DATA's larger buffers
// live in the smtp and cleanup readers only while a message is read.
const (
	readBufSize  = 4096
	writeBufSize = 2048
)

// session is one client connection; it is used by one goroutine, except for
// interrupt, which ctx cancellation calls from another.
type session struct {
	ctx  context.Context
	srv  *Server
	set  *settings
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	log  *maillog.Logger

	client     maillog.Client
	server     netip.AddrPort // the local end, for policy servers
	txSeq      int            // transactions so far, for instance names
	peer       dns.ClientName // the name lookup's codes (client.go)
	dns        *dns.Session   // this session's DNS cache
	start      time.Time
	sessionEnd time.Time

	mu      sync.Mutex // guards stopped against interrupt
	stopped bool
	nread   int64 // bytes read from the client, for "(N bytes)" in DATA
	werr    error // first write error: the session is lost

	state    string // what Postfix logs after "after": the last command
	helo     string
	proto    string // "SMTP" after HELO, "ESMTP" after EHLO
	offered  smtp.Options
	pipeline bool // PIPELINING was offered (EHLO)
	bare     smtp.BareNewline

	errors, junk int
	cmds         maillog.Commands

	anvil bool // this client is counted by anvil (anvilOn)

	auth authState // the SASL login (auth.go)

	tls *tlsState // after STARTTLS or in wrapper mode (tls.go)

	connDecision *Decision // smtpd_delay_reject = no: kept from connect
	heloDecision *Decision
	tx           *transaction
}

// transaction is the state from MAIL to the end of the message or RSET.
type transaction struct {
	mail     smtp.Mail
	rcpts    []queue.Recipient
	addrs    []string // recipient addresses in external form, for logs
	w        *queue.Writer
	id       string
	actions  []*Decision // non-refusing policy decisions (HOLD, ...)
	bdat     *bdatState
	bdatUsed bool
	// instance names the transaction for policy servers, as Postfix's
	// per-MAIL "instance" attribute, so a server can tie its RCPT and
	// END-OF-MESSAGE requests together before any queue ID exists.
	instance string
	// size is the message's size once it is read (END-OF-MESSAGE).
	size int64
}

// errEndSession tells the loop the session is over after the reply sent.
var errEndSession = errors.New("end of session")

func newSession(ctx context.Context, s *Server, c net.Conn) *session {
	now := s.d.Now()
	ss := &session{
		ctx:        ctx,
		srv:        s,
		set:        &s.set,
		conn:       c,
		log:        s.d.Log,
		start:      now,
		sessionEnd: now.Add(s.set.sessionLimit),
		state:      maillog.StateConnect,
	}
	ss.br = bufio.NewReaderSize(connReader{ss}, readBufSize)
	ss.bw = bufio.NewWriterSize(connWriter{ss}, writeBufSize)
	return ss
}

// interrupt is postfix stop: it wakes a blocked read at once.
func (s *session) interrupt() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	_ = s.conn.SetDeadline(time.Now())
}

func (s *session) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// readDeadline applies smtpd_timeout to each read, as Postfix's timed reads
// do, within the cap on the whole session.
func (s *session) readDeadline() time.Time {
	d := time.Now().Add(s.set.timeout)
	if s.sessionEnd.Before(d) {
		return s.sessionEnd
	}
	return d
}

type connReader struct{ s *session }

func (r connReader) Read(p []byte) (int, error) {
	s := r.s
	// The reader has nothing buffered and must wait for the client: this
	// is when replies go out (RFC 2920 §3.2), so a pipelined batch is
	// answered in one write and a client never waits for a reply the
	// server still holds.
	if s.bw.Buffered() > 0 {
		s.flush()
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return 0, os.ErrDeadlineExceeded
	}
	err := s.conn.SetReadDeadline(s.readDeadline())
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := s.ioConn().Read(p)
	s.nread += int64(n)
	return n, err
}

type connWriter struct{ s *session }

func (w connWriter) Write(p []byte) (int, error) {
	s := w.s
	if s.werr != nil {
		return 0, s.werr
	}
	// Writes get smtpd_timeout each, even past the session cap, so the
	// 421 that announces the cap still reaches the client.
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.set.timeout)); err != nil {
		s.werr = err
		return 0, err
	}
	n, err := s.ioConn().Write(p)
	if err != nil {
		s.werr = err
	}
	return n, err
}

// run is the session: greeting, command loop, disconnect record.
func (s *session) run() {
	s.identify()
	s.log.Info("%s", maillog.Connect(s.client))
	s.anvil = s.anvilOn()
	defer func() {
		s.abortTx()
		_ = s.bw.Flush()
		s.anvilDisconnect()
		s.log.Info("%s", maillog.Disconnect(s.client, &s.cmds))
	}()
	// Postfix counts the connection before the greeting and refuses it
	// with 421 over smtpd_client_connection_{count,rate}_limit (smtpd(8)).
	if !s.anvilConnect() {
		return
	}
	if !s.wrapperTLS() {
		return
	}
	if !s.set.delayReject {
		s.connDecision, _ = s.decide(StageConnect, "")
	}
	// RFC 5321 §4.3.1: the client waits for the greeting; input before it
	// is the mark of a bot or of an attempt to desynchronise (smuggling).
	if s.set.forbidPipelining {
		if pend := s.pending(); len(pend) > 0 {
			s.improperPipelining(pend)
			return
		}
	}
	s.write(smtp.Reply{Code: 220, Lines: []string{s.set.banner}})
	for s.werr == nil {
		if s.errors >= s.set.hardErrors {
			s.log.Info("%s", maillog.After(maillog.TooManyErrors, s.state, s.client))
			s.write(smtp.NewReply(421, "4.7.0", s.set.myhostname+" Error: too many errors"))
			return
		}
		if err := s.command(); err != nil {
			return
		}
	}
	// The client went away while replies were being written.
	s.log.Info("%s", maillog.After(maillog.LostConnection, s.state, s.client))
}

// command reads and runs one command; a non-nil error ends the session.
func (s *session) command() error {
	line, err := smtp.ReadCommand(s.br, s.set.lineLimit, s.bare, s.set.bareNewlineCode)
	if err != nil {
		return s.readError(err, 0)
	}
	s.log.Verbose("< %s: %s", s.client, line)
	// Postfix's tokenizer splits on any blank, tabs included.
	verb, arg := line, ""
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		verb, arg = line[:i], line[i+1:]
	}
	verb = strings.ToUpper(verb)
	if s.forbidden(verb, line) {
		return errEndSession
	}
	name := commandName(verb)
	if s.set.forbidPipelining && s.mustWait(name) {
		if pend := s.pending(); len(pend) > 0 {
			s.cmds.Count(name, false)
			s.state = stateName(name)
			s.improperPipelining(pend)
			return errEndSession
		}
	}
	s.state = stateName(name)
	ok, err := s.dispatch(name, line, strings.Join(strings.Fields(arg), " "))
	s.cmds.Count(name, ok)
	return err
}

// readError ends the session after a failed read, with Postfix's record for
// the cause. A refusal that keeps the session in sync (an over-long line) is
// answered and the session goes on. inData is the byte count of a message
// being read, logged as "(N bytes)" as Postfix does, or 0.
func (s *session) readError(err error, inData int64) error {
	if r, ok := smtp.ReplyOf(err); ok {
		if errors.Is(err, smtp.ErrBareLF) || errors.Is(err, smtp.ErrBareCR) {
			s.refuseBareNewline(r)
			return errEndSession
		}
		s.reply(r)
		return nil
	}
	ev := maillog.LostConnection
	switch {
	case s.isStopped() || s.ctx.Err() != nil:
		s.write(smtp.NewReply(421, "4.3.2", "Service shutting down"))
		return errEndSession
	case errors.Is(err, os.ErrDeadlineExceeded):
		ev = maillog.Timeout
		text := s.set.myhostname + " Error: timeout exceeded"
		if !time.Now().Before(s.sessionEnd) {
			ev = maillog.Event("session time limit exceeded")
			text = s.set.myhostname + " Error: session time limit exceeded"
		}
		s.write(smtp.NewReply(421, "4.4.2", text))
	}
	if inData > 0 {
		s.log.Info("%s", maillog.AfterBytes(ev, s.state, inData, s.client))
	} else {
		s.log.Info("%s", maillog.After(ev, s.state, s.client))
	}
	return errEndSession
}

// refuseBareNewline answers a bare LF or CR under smtpd_forbid_bare_newline
// = reject, logs it as a reject (postconf(5): 'log a "bare <LF> received"
// error') and disconnects, as Postfix 3.9 does: after such input the client
// and server may no longer agree where commands begin.
func (s *session) refuseBareNewline(r smtp.Reply) {
	s.log.Info("%s", maillog.Reject(s.queueID(), s.state, s.client, r.String(), s.envelope("")))
	s.write(r)
}

// forbidden implements smtpd_forbidden_commands: HTTP and proxy requests and
// lines that look like message headers (a client that lost sync, or a
// browser used against port 25) end the session with Postfix's reply.
func (s *session) forbidden(verb, line string) bool {
	hit, err := s.set.forbidden.match(verb)
	if err != nil {
		s.log.Warning("smtpd_forbidden_commands: %v", err)
	}
	if !hit && !headerLabel(verb) {
		return false
	}
	if len(line) > 100 {
		line = line[:100]
	}
	s.log.Warning("non-SMTP command from %s: %s", s.client, line)
	s.write(smtp.NewReply(221, "2.7.0", "Error: I can break rules, too. Goodbye."))
	return true
}

// headerLabel reports the "Label:" form of a header name (RFC 5322 §2.2).
func headerLabel(verb string) bool {
	if len(verb) < 2 || verb[len(verb)-1] != ':' {
		return false
	}
	for i := 0; i < len(verb)-1; i++ {
		if c := verb[i]; c <= ' ' || c > '~' || c == ':' {
			return false
		}
	}
	// "MAIL FROM:" and "RCPT TO:" split at the blank, so their verbs
	// never end in ':'; a verb such as "FROM:" is a header.
	return true
}

// mustWait reports whether input must not follow this command before its
// reply: without PIPELINING every command (RFC 5321 §4.3), with it the
// commands that end a group (RFC 2920 §3.1).
func (s *session) mustWait(name string) bool {
	if name == "bdat" {
		// The chunk follows BDAT by definition (RFC 3030 §2), with or
		// without PIPELINING.
		return false
	}
	if !s.pipeline {
		return true
	}
	switch name {
	case "ehlo", "helo", "data", "vrfy", "expn", "noop", "quit", "etrn", "help", "starttls", "auth":
		return true
	}
	return false
}

// improperPipelining is smtpd_forbid_unauth_pipelining's refusal
// (postconf(5)): reply, log the unexpected input, disconnect.
func (s *session) improperPipelining(pend []byte) {
	s.log.Info("%s", maillog.ImproperPipelining(s.state, s.client, pend))
	s.write(smtp.NewReply(554, "5.5.0", "Error: SMTP protocol synchronization"))
}

// write sends a reply without counting it as a client error; used for the
// replies that end a session.
func (s *session) write(r smtp.Reply) {
	s.log.Verbose("> %s: %s", s.client, r.String())
	_, _ = r.WriteTo(s.bw)
	s.flush()
}

// reply queues a command's reply; connReader sends it when the session next
// waits for input (RFC 2920 §3.2). 4xx and 5xx replies count as errors for smtpd_soft_error_limit
// and smtpd_hard_error_limit, as in Postfix's smtpd_chat_reply.
func (s *session) reply(r smtp.Reply) {
	if r.Code >= 400 {
		s.errors++
		if s.errors >= s.set.softErrors && s.set.errorSleep > 0 {
			s.flush()
			s.sleep(s.set.errorSleep)
		}
	}
	s.log.Verbose("> %s: %s", s.client, r.String())
	_, _ = r.WriteTo(s.bw)
}

func (s *session) flush() {
	if err := s.bw.Flush(); err != nil && s.werr == nil {
		s.werr = err
	}
}

// sleep waits d or until postfix stop.
func (s *session) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
}

// pending returns up to maillog.MaxPipelined bytes the client has sent that
// the session has not read as commands yet: what is buffered, else what the
// kernel holds.
func (s *session) pending() []byte {
	if n := s.br.Buffered(); n > 0 {
		if n > maillog.MaxPipelined {
			n = maillog.MaxPipelined
		}
		b, _ := s.br.Peek(n)
		return append([]byte(nil), b...)
	}
	// Inside TLS the kernel holds ciphertext, not commands: only what
	// the session has decrypted and buffered counts.
	return peekConn(s.ioConn(), maillog.MaxPipelined)
}

// queueID is the ID logged in records, NOQUEUE before the queue file exists.
func (s *session) queueID() string {
	if s.tx != nil && s.tx.id != "" {
		return s.tx.id
	}
	return maillog.NoQueue
}

// envelope is what Postfix appends to reject records.
func (s *session) envelope(rcpt string) maillog.Envelope {
	e := maillog.Envelope{Proto: s.proto, Helo: s.helo}
	if s.tx != nil {
		e.Sender, e.HasSender = s.tx.mail.From.Quoted(), true
		if s.tx.mail.From.Null() {
			e.Sender = ""
		}
	}
	if rcpt != "" {
		e.Recipient, e.HasRecipient = rcpt, true
	}
	return e
}

// abortTx drops the transaction in progress and its queue file.
func (s *session) abortTx() {
	if s.tx == nil {
		return
	}
	if s.tx.w != nil {
		_ = s.tx.w.Abort()
	}
	s.tx = nil
}
