package lmtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"moat/internal/delivery"
	"moat/internal/queue"
	"moat/internal/smtp"
)

// session is one LMTP connection carrying one delivery request.
type session struct {
	ctx context.Context
	a   *Agent
	req *delivery.Request
	nh  Nexthop

	// w is the connection, new or from the cache.
	w *wire

	// namaddr is "host[addr]" for "host H said" texts; relay is
	// namaddrport ("host[addr]:port", "myhostname[path]").
	namaddr, relay string
	ext            smtp.Extensions

	results map[int]Result
}

func newSession(ctx context.Context, a *Agent, req *delivery.Request, nh Nexthop) *session {
	return &session{ctx: ctx, a: a, req: req, nh: nh, results: make(map[int]Result, len(req.Recipients))}
}

// run connects (or takes a cached connection that answers a RSET
// probe), runs the transaction and returns a result for every recipient.
// A connection left clean after the body goes back to the cache.
func (s *session) run() []Result {
	key := s.nh.String()
	if w := s.a.cache.get(key, s.a.now()); w != nil && s.guard(w.c, func() bool { return s.probe(w) }) {
		s.use(w)
	} else {
		if dsn, reason := s.connect(); reason != "" {
			return s.a.all(s.req, stateOf(dsn), dsn, reason, "none")
		}
		s.w.born = s.a.now()
		s.w.namaddr, s.w.relay = s.namaddr, s.relay
		if !s.guard(s.w.c, s.handshake) {
			s.w.c.Close()
			return s.collect()
		}
		s.w.ext = s.ext
	}
	s.w.uses++
	c := s.w.c
	switch clean := s.guard(c, s.mailTransaction); {
	case clean && s.a.cache.put(key, s.w, s.a.now()):
	case clean:
		s.quit()
		c.Close()
	default:
		c.Close()
	}
	return s.collect()
}

// guard runs f with c closed should the context end meanwhile (the
// queue manager stopping), which makes f's I/O fail at once; a
// connection so closed is never reported clean.
func (s *session) guard(c net.Conn, f func() bool) bool {
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	ok := f()
	return stop() && ok
}

// use takes over a cached connection.
func (s *session) use(w *wire) {
	s.w = w
	s.namaddr, s.relay, s.ext = w.namaddr, w.relay, w.ext
}

// probe checks that a cached connection still works, as Postfix's
// "RSET probe" does before it reuses one (lmtp_rset_timeout); a
// connection that fails it is closed and a new one made, without any
// error for the mail.
func (s *session) probe(w *wire) bool {
	t := s.a.s
	w.send("RSET", t.rset)
	if err := w.flush(t.rset); err != nil {
		w.c.Close()
		return false
	}
	rep, err := w.read(t.rset)
	if err != nil || rep.Code/100 != 2 {
		w.c.Close()
		return false
	}
	return true
}

// collect returns the results, one per recipient.
func (s *session) collect() []Result {
	out := make([]Result, 0, len(s.req.Recipients))
	for _, r := range s.req.Recipients {
		res, ok := s.results[r.Index]
		if !ok {
			// Every path sets a result; this keeps the contract even
			// if one is missed.
			res = Result{Index: r.Index, State: queue.RcptDeferred, DSN: "4.3.0",
				Reason: "delivery interrupted", Relay: s.relay, Done: s.a.now()}
		}
		out = append(out, res)
	}
	return out
}

// connect opens the connection, trying each address of a TCP host in
// turn as smtp_connect() does, and returns the DSN and reason of the last
// failure when none answers.
func (s *session) connect() (dsn, reason string) {
	d := net.Dialer{Timeout: s.a.s.connect}
	if s.nh.Unix {
		// sockaddr_un's sun_path holds 108 bytes with the NUL.
		if len(s.nh.Dial) >= 108 {
			if s.a.log != nil {
				s.a.log.Warning("unix-domain name too long: %s", s.nh.Dial)
			}
			return "4.3.5", "Server configuration error"
		}
		s.namaddr = s.a.s.myhostname + "[" + s.nh.Path + "]"
		s.relay = s.namaddr
		c, err := d.DialContext(s.ctx, "unix", s.nh.Dial)
		if err != nil && errors.Is(err, syscall.ENOENT) && s.nh.Dial != s.nh.Path {
			// In a chroot jail at queue_directory the absolute path
			// does not exist, but the working directory is the queue
			// directory, where Postfix's lmtp(8) resolves the name.
			if c2, err2 := d.DialContext(s.ctx, "unix", s.nh.Path); err2 == nil {
				c, err = c2, nil
			}
		}
		if err != nil {
			return "4.4.1", "connect to " + s.namaddr + ": " + connErr(err)
		}
		s.setConn(c)
		return "", ""
	}
	addrs, why := s.lookup()
	if why != "" {
		return "4.4.4", why
	}
	port := strconv.Itoa(s.nh.Port)
	for _, ip := range addrs {
		namaddr := s.nh.Host + "[" + ip + "]"
		c, err := d.DialContext(s.ctx, "tcp", net.JoinHostPort(ip, port))
		if err != nil {
			dsn, reason = "4.4.1", "connect to "+namaddr+":"+port+": "+connErr(err)
			continue
		}
		s.namaddr = namaddr
		s.relay = namaddr + ":" + port
		s.setConn(c)
		return "", ""
	}
	return dsn, reason
}

// lookup returns the host's addresses, the host itself when it is one,
// or the reason Postfix logs when there are none. Names go through the
// system resolver (lmtp_host_lookup = native in effect; MX records play
// no part in LMTP).
func (s *session) lookup() (addrs []string, why string) {
	if ip := net.ParseIP(s.nh.Host); ip != nil {
		return []string{ip.String()}, ""
	}
	ips, err := net.DefaultResolver.LookupIPAddr(s.ctx, s.nh.Host)
	if err != nil || len(ips) == 0 {
		return nil, "Host or domain name not found. Name service error for name=" + s.nh.Host + " type=A: Host not found"
	}
	for _, ip := range ips {
		addrs = append(addrs, ip.IP.String())
	}
	return addrs, ""
}

// connErr is %m for a failed connect; Go reports a dial timeout as its
// own error, which the kernel would have called ETIMEDOUT.
func connErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "Connection timed out"
	}
	return delivery.Strerror(err)
}

func (s *session) setConn(c net.Conn) {
	s.w = newWire(c)
}

func (s *session) read(timeout time.Duration) (smtp.Reply, error) { return s.w.read(timeout) }

func (s *session) send(line string, timeout time.Duration) { s.w.send(line, timeout) }

func (s *session) flush(timeout time.Duration) error { return s.w.flush(timeout) }

// set records a recipient's result unless it already has one.
func (s *session) set(r delivery.Recipient, dsn, reason string) {
	if _, ok := s.results[r.Index]; ok {
		return
	}
	s.results[r.Index] = Result{Index: r.Index, State: stateOf(dsn), DSN: dsn,
		Reason: reason, Relay: s.relay, Done: s.a.now()}
}

// failRest gives every recipient without a result the same one.
func (s *session) failRest(dsn, reason string) {
	for _, r := range s.req.Recipients {
		s.set(r, dsn, reason)
	}
}

// said is Postfix's "host H[A] said: REPLY (in reply to COMMAND)".
func (s *session) said(rep smtp.Reply, command string) string {
	return fmt.Sprintf("host %s said: %s (in reply to %s)", s.namaddr, rep.LogText(), command)
}

// ioFail defers every recipient without a result after an I/O error,
// with smtp_stream_except()'s texts.
func (s *session) ioFail(err error, where string) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		s.failRest("4.4.2", fmt.Sprintf("conversation with %s timed out while %s", s.relay, where))
	case errors.Is(err, smtp.ErrBadReply):
		// Postfix would read on; a server that breaks reply syntax is
		// out of sync, so moat ends the session and retries later.
		s.failRest("4.5.0", fmt.Sprintf("malformed reply from %s while %s", s.relay, where))
	default:
		s.failRest("4.4.2", fmt.Sprintf("lost connection with %s while %s", s.relay, where))
	}
}

// The states of smtp_proto.c's xfer_states[] and xfer_request[]: the
// first names what was going on when the connection failed, the second
// which command a reply answers.
const (
	whileGreeting = "receiving the initial server greeting"
	whileLHLO     = "performing the LHLO handshake"
	whileMail     = "sending MAIL FROM"
	whileRcpt     = "sending RCPT TO"
	whileData     = "sending DATA command"
	whileBody     = "sending message body"
	whileDot      = "sending end of data -- message may be sent more than once"

	inMail = "MAIL FROM command"
	inRcpt = "RCPT TO command"
	inData = "DATA command"
	inDot  = "end of DATA command"
)

// transaction runs a whole session on a connection that will not be
// cached: handshake, mail transaction and QUIT (run does the same with
// the cache; the session fuzzer drives this).
func (s *session) transaction() {
	if !s.handshake() {
		return
	}
	if s.mailTransaction() {
		s.quit()
	}
}

// handshake reads the greeting and sends LHLO; on failure every
// recipient has its result and the session is over.
func (s *session) handshake() bool {
	t := s.a.s
	greet, err := s.read(t.lhlo)
	if err != nil {
		s.ioFail(err, whileGreeting)
		return false
	}
	if greet.Code/100 != 2 {
		s.failRest(greet.DSN(), fmt.Sprintf("host %s refused to talk to me: %s", s.namaddr, greet.LogText()))
		return false
	}
	s.send("LHLO "+t.lhloName, t.lhlo)
	if err := s.flush(t.lhlo); err != nil {
		s.ioFail(err, whileLHLO)
		return false
	}
	lhlo, err := s.read(t.lhlo)
	if err != nil {
		s.ioFail(err, whileLHLO)
		return false
	}
	if lhlo.Code/100 != 2 {
		s.failRest(lhlo.DSN(), fmt.Sprintf("host %s refused to talk to me: %s", s.namaddr, lhlo.LogText()))
		s.quit()
		return false
	}
	s.ext = smtp.ParseEHLO(lhlo)
	return true
}

// mailTransaction runs MAIL, RCPT, DATA and the body. It reports whether
// the connection is clean (every reply read, no transaction open), so it
// can be reused or ended with QUIT; otherwise it has been ended already
// (QUIT sent where that made sense) and must only be closed.
func (s *session) mailTransaction() bool {
	if !s.precheck() {
		s.quit()
		return false
	}
	accepted, ok := s.envelope()
	if !ok {
		return false
	}
	return s.body(accepted)
}

// precheck refuses what the server announced it cannot take, before
// MAIL FROM, with Postfix's texts.
func (s *session) precheck() bool {
	env := s.req.Envelope
	if limit, ok := s.ext.SizeLimit(); ok && limit > 0 && env.Size > limit {
		s.failRest("5.3.4", fmt.Sprintf("message size %d exceeds size limit %d of server %s", env.Size, limit, s.namaddr))
		return false
	}
	if env.Flags&queue.FlagSMTPUTF8 != 0 && !s.ext.Has("SMTPUTF8") && s.needsUTF8() {
		s.failRest("5.6.7", fmt.Sprintf("SMTPUTF8 is required, but was not offered by host %s", s.namaddr))
		return false
	}
	return true
}

// needsUTF8 reports a non-ASCII envelope address, which a server without
// SMTPUTF8 cannot take; UTF-8 only in headers goes through, as Postfix's
// default smtputf8_autodetect_classes lets it.
func (s *session) needsUTF8() bool {
	if !isASCII(s.req.Envelope.Sender) {
		return true
	}
	for _, r := range s.req.Recipients {
		if !isASCII(r.Address) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// mailCommand is MAIL FROM with the parameters the server offered.
func (s *session) mailCommand() string {
	env := s.req.Envelope
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	if env.Sender != "" {
		b.WriteString(smtp.Path{Addr: env.Sender}.Quoted())
	}
	b.WriteByte('>')
	if _, ok := s.ext.SizeLimit(); ok && env.Size > 0 {
		fmt.Fprintf(&b, " SIZE=%d", env.Size)
	}
	if env.Flags&queue.Flag8BitMIME != 0 && s.ext.Has("8BITMIME") {
		b.WriteString(" BODY=8BITMIME")
	}
	if s.ext.Has("DSN") {
		if env.Ret != "" {
			b.WriteString(" RET=" + env.Ret)
		}
		if env.EnvID != "" {
			b.WriteString(" ENVID=" + smtp.XtextEncode(env.EnvID))
		}
	}
	if env.Flags&queue.FlagSMTPUTF8 != 0 && s.ext.Has("SMTPUTF8") {
		b.WriteString(" SMTPUTF8")
	}
	return b.String()
}

// rcptCommand is RCPT TO with the RFC 3461 parameters when the server
// offered DSN. Like Postfix, moat sends ORCPT even when the client gave
// none, from the original recipient address.
func (s *session) rcptCommand(r delivery.Recipient) string {
	cmd := "RCPT TO:<" + smtp.Path{Addr: r.Address}.Quoted() + ">"
	if !s.ext.Has("DSN") {
		return cmd
	}
	if r.Notify != 0 {
		cmd += " NOTIFY=" + smtp.Notify(r.Notify).String()
	}
	orcpt := r.ORCPT
	if orcpt == "" {
		orig := r.OrigAddress
		if orig == "" {
			orig = r.Address
		}
		orcpt = "rfc822;" + orig
	}
	if typ, addr, ok := strings.Cut(orcpt, ";"); ok && isASCII(addr) {
		cmd += " ORCPT=" + typ + ";" + smtp.XtextEncode(addr)
	}
	return cmd
}

// pipelineBatch bounds how many commands go out before their replies
// are read. A server's replies queue in its socket buffer while it
// waits for us to read them; unbounded pipelining of a long recipient
// list could fill both directions and stall (Postfix bounds it by the
// TCP send buffer size).
const pipelineBatch = 100

// command is one envelope command and what its reply decides.
type command struct {
	line    string
	timeout time.Duration
	while   string              // the state for I/O error texts
	rcpt    *delivery.Recipient // nil for MAIL and DATA
	data    bool
}

// envelope sends MAIL, the RCPTs and DATA, in batches when the server
// offered PIPELINING (RFC 2920), else one at a time, and returns the
// recipients the server accepted; ok is false when the session is over
// (no body to follow: an error, or nobody accepted).
func (s *session) envelope() (accepted []delivery.Recipient, ok bool) {
	t := s.a.s
	cmds := make([]command, 0, len(s.req.Recipients)+2)
	cmds = append(cmds, command{line: s.mailCommand(), timeout: t.mail, while: whileMail})
	for i := range s.req.Recipients {
		r := &s.req.Recipients[i]
		cmds = append(cmds, command{line: s.rcptCommand(*r), timeout: t.rcpt, while: whileRcpt, rcpt: r})
	}
	cmds = append(cmds, command{line: "DATA", timeout: t.dataInit, while: whileData, data: true})
	batch := 1
	if s.ext.Has("PIPELINING") {
		batch = pipelineBatch
	}
	var mail smtp.Reply
	for i := 0; i < len(cmds); {
		// Without pipelining, a refused MAIL or no accepted recipient
		// ends the transaction before DATA.
		if i > 0 && (mail.Code/100 != 2 || cmds[i].data && len(accepted) == 0) {
			break
		}
		j := min(i+batch, len(cmds))
		for _, c := range cmds[i:j] {
			s.send(c.line, c.timeout)
		}
		if err := s.flush(cmds[i].timeout); err != nil {
			s.ioFail(err, cmds[i].while)
			return nil, false
		}
		for _, c := range cmds[i:j] {
			rep, err := s.read(c.timeout)
			if err != nil {
				s.ioFail(err, c.while)
				return nil, false
			}
			switch {
			case i == 0 && c.rcpt == nil && !c.data:
				mail = rep
				if rep.Code/100 != 2 {
					s.failRest(rep.DSN(), s.said(rep, inMail))
				}
			case c.rcpt != nil:
				if mail.Code/100 != 2 {
					continue
				}
				if rep.Code/100 == 2 {
					accepted = append(accepted, *c.rcpt)
				} else {
					s.set(*c.rcpt, rep.DSN(), s.said(rep, inRcpt))
				}
			case c.data:
				return s.afterData(rep, accepted)
			}
		}
		i = j
	}
	s.quit()
	return nil, false
}

// afterData judges the DATA reply.
func (s *session) afterData(data smtp.Reply, accepted []delivery.Recipient) ([]delivery.Recipient, bool) {
	if data.Code == 354 && len(accepted) == 0 {
		// RFC 2033 section 4.2 says DATA fails when no RCPT succeeded;
		// a server that says 354 anyway is out of step, and only
		// dropping the connection ends its transaction safely.
		return nil, false
	}
	if len(accepted) == 0 {
		s.quit()
		return nil, false
	}
	if data.Code != 354 {
		for _, r := range accepted {
			s.set(r, data.DSN(), s.said(data, inData))
		}
		s.quit()
		return nil, false
	}
	return accepted, true
}

// body sends the message and reads one reply per accepted recipient, in
// RCPT order (RFC 2033 section 4.2). It reports whether the session can
// still be ended with QUIT.
func (s *session) body(accepted []delivery.Recipient) bool {
	t := s.a.s
	s.w.wtimeout = t.dataXfer
	dw := smtp.NewDotWriter(markWriter{s.w.bw})
	dw.LineLimit = t.lineLimit
	if _, err := io.Copy(dw, s.req.Content()); err != nil {
		var we *writeError
		if errors.As(err, &we) {
			s.ioFail(we.err, whileBody)
			return false
		}
		// The queue file is damaged: never end the DATA, so the server
		// discards the partial message; the queue manager deals with
		// the file.
		if s.a.log != nil {
			s.a.log.Warning("%s: read message content: %v", s.req.QueueID, err)
		}
		s.failRest("4.3.0", "unreadable mail queue entry")
		return false
	}
	if err := dw.Close(); err != nil {
		s.ioFail(err, whileBody)
		return false
	}
	if err := s.flush(t.dataDone); err != nil {
		s.ioFail(err, whileDot)
		return false
	}
	for _, r := range accepted {
		rep, err := s.read(t.dataDone)
		if err != nil {
			s.ioFail(err, whileDot)
			return false
		}
		if rep.Code/100 == 2 {
			s.set(r, rep.DSN(), rep.LogText())
		} else {
			s.set(r, rep.DSN(), s.said(rep, inDot))
		}
	}
	return true
}

// writeError marks a failed write to the server inside io.Copy, to tell
// it from a failed read of the queue file.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// Unwrap lets ioFail see a timeout behind it.
func (e *writeError) Unwrap() error { return e.err }

// markWriter wraps the errors of writes to the server in writeError.
type markWriter struct{ w io.Writer }

func (m markWriter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// quit ends the session politely; its failure changes no result.
func (s *session) quit() {
	t := s.a.s
	s.send("QUIT", t.quit)
	if s.flush(t.quit) == nil {
		s.read(t.quit)
	}
}
