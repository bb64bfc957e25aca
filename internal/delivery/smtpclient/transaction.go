package smtpclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"moat/internal/delivery"
	"moat/internal/queue"
	"moat/internal/smtp"
)

func isTimeout(err error, ne *net.Error) bool { return errors.As(err, ne) && (*ne).Timeout() }

func isBadReply(err error) bool { return errors.Is(err, smtp.ErrBadReply) }

// mailTransaction runs MAIL, RCPT, DATA and the body for the pending
// recipients. It reports whether the connection is clean (every reply
// read, no transaction open), so it can be reused or ended with QUIT;
// otherwise it has been ended already (QUIT sent where that made sense)
// and must only be closed.
func (s *session) mailTransaction() bool {
	rcpts := s.d.Pending()
	if len(rcpts) == 0 {
		return true
	}
	if !s.precheck(rcpts) {
		s.quit()
		return false
	}
	accepted, ok := s.envelope(rcpts)
	if !ok {
		return false
	}
	return s.body(accepted)
}

// precheck refuses what the server announced it cannot take, before
// MAIL FROM, with Postfix's texts (smtp_proto.c).
func (s *session) precheck(rcpts []delivery.Recipient) bool {
	env := s.d.req.Envelope
	if limit, ok := s.w.Ext.SizeLimit(); ok && limit > 0 && env.Size > limit {
		s.failRest("5.3.4", fmt.Sprintf("message size %d exceeds size limit %d of server %s", env.Size, limit, s.w.Namaddr), nil, "")
		return false
	}
	if env.Flags&queue.FlagSMTPUTF8 != 0 && !s.w.Ext.Has("SMTPUTF8") && needsUTF8(env.Sender, rcpts) {
		s.failRest("5.6.7", fmt.Sprintf("SMTPUTF8 is required, but was not offered by host %s", s.w.Namaddr), nil, "")
		return false
	}
	return true
}

// needsUTF8 reports a non-ASCII envelope address, which a server without
// SMTPUTF8 cannot take; UTF-8 only in headers goes through, as Postfix's
// default smtputf8_autodetect_classes lets it.
func needsUTF8(sender string, rcpts []delivery.Recipient) bool {
	if !isASCII(sender) {
		return true
	}
	for _, r := range rcpts {
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

// downgrade reports whether the body must be converted to 7 bits: the
// server did not offer 8BITMIME (RFC 6152 section 3) and the message is
// 8-bit, by its BODY=8BITMIME or by its content.
func (s *session) downgrade() bool {
	if !s.d.st.Downgrade || s.w.Ext.Has("8BITMIME") {
		return false
	}
	if s.d.req.Envelope.Flags&queue.Flag8BitMIME != 0 {
		return true
	}
	b, err := io.ReadAll(s.d.req.Content())
	return err == nil && has8bit(b)
}

// mailCommand is MAIL FROM with the parameters the server offered.
func (s *session) mailCommand(sevenBit bool) string {
	env := s.d.req.Envelope
	ext := s.w.Ext
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	if env.Sender != "" {
		b.WriteString(smtp.Path{Addr: env.Sender}.Quoted())
	}
	b.WriteByte('>')
	if _, ok := ext.SizeLimit(); ok && env.Size > 0 {
		fmt.Fprintf(&b, " SIZE=%d", env.Size)
	}
	if env.Flags&queue.Flag8BitMIME != 0 && ext.Has("8BITMIME") && !sevenBit {
		b.WriteString(" BODY=8BITMIME")
	}
	if ext.Has("DSN") {
		if env.Ret != "" {
			b.WriteString(" RET=" + env.Ret)
		}
		if env.EnvID != "" {
			b.WriteString(" ENVID=" + smtp.XtextEncode(env.EnvID))
		}
	}
	if env.Flags&queue.FlagSMTPUTF8 != 0 && ext.Has("SMTPUTF8") {
		b.WriteString(" SMTPUTF8")
	}
	return b.String()
}

// rcptCommand is RCPT TO with the RFC 3461 parameters when the server
// offered DSN. Like Postfix, moat sends ORCPT even when the client gave
// none, from the original recipient address.
func (s *session) rcptCommand(r delivery.Recipient) string {
	cmd := "RCPT TO:<" + smtp.Path{Addr: r.Address}.Quoted() + ">"
	if !s.w.Ext.Has("DSN") {
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
func (s *session) envelope(rcpts []delivery.Recipient) (accepted []delivery.Recipient, ok bool) {
	st := s.d.st
	sevenBit := s.downgrade()
	s.w.sevenBit = sevenBit
	cmds := make([]command, 0, len(rcpts)+2)
	cmds = append(cmds, command{line: s.mailCommand(sevenBit), timeout: st.Mail, while: whileMail})
	for i := range rcpts {
		cmds = append(cmds, command{line: s.rcptCommand(rcpts[i]), timeout: st.Rcpt, while: whileRcpt, rcpt: &rcpts[i]})
	}
	cmds = append(cmds, command{line: "DATA", timeout: st.DataInit, while: whileData, data: true})
	batch := 1
	if s.w.Ext.Has("PIPELINING") {
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
			s.w.send(c.line, c.timeout)
		}
		if err := s.w.flush(cmds[i].timeout); err != nil {
			s.ioFail(err, cmds[i].while)
			return nil, false
		}
		for _, c := range cmds[i:j] {
			rep, err := s.w.read(c.timeout)
			if err != nil {
				s.ioFail(err, c.while)
				return nil, false
			}
			switch {
			case c.rcpt == nil && !c.data:
				mail = rep
				if rep.Code/100 != 2 {
					s.refuse(rep, inMail)
				}
			case c.rcpt != nil:
				if mail.Code/100 != 2 {
					continue
				}
				if rep.Code/100 == 2 {
					accepted = append(accepted, *c.rcpt)
				} else {
					dsn, reason := s.said(rep, inRcpt)
					s.set(*c.rcpt, dsn, reason, &rep, inRcpt)
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
		// RFC 2033 section 4.2 and RFC 2920 section 3.1 say DATA fails
		// when no RCPT succeeded; a server that says 354 anyway is out
		// of step, and only dropping the connection ends its
		// transaction safely.
		return nil, false
	}
	if len(accepted) == 0 {
		s.quit()
		return nil, false
	}
	if data.Code != 354 {
		dsn, reason := s.said(data, inData)
		for _, r := range accepted {
			s.set(r, dsn, reason, &data, inData)
		}
		s.quit()
		return nil, false
	}
	return accepted, true
}

// body sends the message and reads the reply to its end: one for the
// transaction in SMTP, one per accepted recipient in RCPT order in LMTP
// (RFC 2033 section 4.2). It reports whether the session is clean.
func (s *session) body(accepted []delivery.Recipient) bool {
	st := s.d.st
	s.w.wtimeout = st.DataXfer
	dw := smtp.NewDotWriter(markWriter{s.w.bw})
	dw.LineLimit = st.LineLimit
	var src io.Reader = s.d.req.Content()
	if s.w.sevenBit {
		b, err := io.ReadAll(src)
		if err != nil {
			return s.damaged(err)
		}
		src = bytes.NewReader(Downgrade(b))
	}
	if _, err := io.Copy(dw, src); err != nil {
		var we *writeError
		if errors.As(err, &we) {
			s.ioFail(we.err, whileBody)
			return false
		}
		return s.damaged(err)
	}
	if err := dw.Close(); err != nil {
		s.ioFail(err, whileBody)
		return false
	}
	if err := s.w.flush(st.DataDone); err != nil {
		s.ioFail(err, whileDot)
		return false
	}
	replies := 1
	if st.LMTP {
		replies = len(accepted)
	}
	for i := 0; i < replies; i++ {
		rep, err := s.w.read(st.DataDone)
		if err != nil {
			s.ioFail(err, whileDot)
			return false
		}
		to := accepted[i : i+1]
		if !st.LMTP {
			to = accepted
		}
		for _, r := range to {
			if rep.Code/100 == 2 {
				s.set(r, rep.DSN(), rep.LogText(), &rep, inDot)
			} else {
				dsn, reason := s.said(rep, inDot)
				s.set(r, dsn, reason, &rep, inDot)
			}
		}
	}
	return true
}

// damaged ends a transaction whose queue file could not be read: the
// DATA is never ended, so the server discards the partial message; the
// queue manager deals with the file.
func (s *session) damaged(err error) bool {
	if s.d.st.Log != nil {
		s.d.st.Log.Warning("%s: read message content: %v", s.d.req.QueueID, err)
	}
	final := s.final
	s.final = true
	s.failRest("4.3.0", "unreadable mail queue entry", nil, "")
	s.final = final
	return false
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
