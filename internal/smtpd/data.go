package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"moat/internal/cleanup"
	"moat/internal/maillog"
	"moat/internal/queue"
	"moat/internal/rewrite"
	"moat/internal/smtp"
)

// bdatState is a message being received in BDAT chunks (RFC 3030 §2).
type bdatState struct {
	filter *cleanup.Filter
	tap    *msgTap
	chunks *smtp.ChunkReader
	start  int64 // s.nread when the first chunk began, for "(N bytes)"
}

// dataCmd is DATA (RFC 5321 §4.1.1.4): 354, the message through cleanup into
// the queue file, and 250 only once the file is durable.
func (s *session) dataCmd(arg string) (bool, error) {
	if arg != "" {
		s.reply(smtp.NewReply(501, "5.5.4", "Syntax: DATA"))
		return false, nil
	}
	if !s.haveRecipients() {
		return false, nil
	}
	if s.tx.bdatUsed {
		s.reply(smtp.NewReply(503, "5.5.1", "Error: DATA after BDAT"))
		return false, nil
	}
	if d, refused := s.decide(StageData, ""); refused {
		s.rejectWith(d, "")
		return false, nil
	} else {
		s.addActions(d, "")
	}
	s.reply(smtp.Reply{Code: 354, Lines: []string{"End data with <CR><LF>.<CR><LF>"}})
	s.flush()
	f, tap := s.startMessage()
	start := s.nread - int64(s.br.Buffered())
	res, err := smtp.ReadData(s.br, tap, s.dataOptions())
	// ReadData reads through the terminator unless the connection failed,
	// so its refusals come after the end of the message.
	if _, refusal := smtp.ReplyOf(err); err == nil || tap.err != nil || refusal {
		s.state = maillog.StateEndOfMessage
	}
	if err != nil {
		return false, s.messageError(err, tap, s.nread-int64(s.br.Buffered())-start)
	}
	return s.finish(f, tap, res.Size, false)
}

// haveRecipients answers DATA or BDAT outside a transaction with recipients,
// in Postfix's order of checks.
func (s *session) haveRecipients() bool {
	switch {
	case s.tx == nil:
		s.reply(replyNeedRcpt)
	case len(s.tx.rcpts) == 0:
		s.reply(replyNoRcpts)
	default:
		return true
	}
	return false
}

func (s *session) dataOptions() smtp.DataOptions {
	return smtp.DataOptions{BareNewline: s.bare, RejectCode: s.set.bareNewlineCode, SizeLimit: s.set.sizeLimit}
}

// bdatCmd is BDAT (RFC 3030 §2). Every chunk is read in full whatever
// happens, so the session stays in sync; a chunk whose count cannot be parsed
// ends the session, because the next command's start is unknown.
func (s *session) bdatCmd(line string) (bool, error) {
	size, last, err := smtp.ParseBDAT(smtp.Tokenize(line))
	if err != nil {
		s.write(smtp.NewReply(521, "5.5.4", "Syntax: BDAT count [LAST]"))
		return false, errEndSession
	}
	if !s.chunking() {
		s.write(smtp.NewReply(521, "5.5.1", "Error: command not implemented"))
		return false, errEndSession
	}
	if s.tx == nil || len(s.tx.rcpts) == 0 {
		if _, err := io.CopyN(io.Discard, s.br, size); err != nil {
			return false, s.readError(err, 0)
		}
		s.haveRecipients()
		return false, nil
	}
	tx := s.tx
	if tx.bdat == nil {
		if d, refused := s.decide(StageData, ""); refused {
			if _, err := io.CopyN(io.Discard, s.br, size); err != nil {
				return false, s.readError(err, 0)
			}
			s.rejectWith(d, "")
			return false, nil
		} else {
			s.addActions(d, "")
		}
		f, tap := s.startMessage()
		tx.bdat = &bdatState{filter: f, tap: tap, chunks: smtp.NewChunkReader(tap, s.dataOptions()),
			start: s.nread - int64(s.br.Buffered())}
		tx.bdatUsed = true
	}
	b := tx.bdat
	if err := b.chunks.ReadChunk(s.br, size); err != nil {
		return false, s.readError(err, s.nread-int64(s.br.Buffered())-b.start)
	}
	if !last {
		s.reply(smtp.NewReply(250, "2.0.0", fmt.Sprintf("Ok: %d bytes", size)))
		return true, nil
	}
	s.state = maillog.StateEndOfMessage
	res, err := b.chunks.Finish()
	if err != nil {
		return false, s.messageError(err, b.tap, 0)
	}
	return s.finish(b.filter, b.tap, res.Size, true)
}

// messageError ends a message that could not be stored: a queue write
// failure (451, the session goes on), a refusal from the reader (too big:
// 552; a bare newline: reply and disconnect), or the connection lost.
func (s *session) messageError(err error, tap *msgTap, n int64) error {
	if tap.err != nil {
		s.log.Warning("%s: queue file write error: %v", s.queueID(), tap.err)
		s.abortTx()
		s.reply(replyWriteError)
		return nil
	}
	if r, ok := smtp.ReplyOf(err); ok {
		if errors.Is(err, smtp.ErrBareLF) || errors.Is(err, smtp.ErrBareCR) {
			s.refuseBareNewline(r)
			s.abortTx()
			return errEndSession
		}
		s.abortTx()
		s.reply(r)
		return nil
	}
	s.abortTx()
	return s.readError(err, n)
}

// startMessage opens the cleanup filter over the queue file, with the
// Received: header first.
func (s *session) startMessage() (*cleanup.Filter, *msgTap) {
	tx := s.tx
	now := s.srv.d.Now()
	opts := s.srv.cleanup.Options()
	opts.QueueID = tx.id
	opts.Origin = s.clientName() + "[" + maillog.AddrString(s.client.Addr) + "]"
	opts.Env = s.envelope(tx.addrs[0])
	addr := maillog.AddrString(s.client.Addr)
	if s.client.Addr.Is6() {
		addr = "IPv6:" + addr
	}
	rcpts := make([]string, len(tx.rcpts))
	for i, r := range tx.rcpts {
		rcpts[i] = r.Address
	}
	ri := cleanup.ReceivedInfo{
		Helo:       s.helo,
		ClientName: s.clientName(),
		ClientAddr: addr,
		MyHostname: s.set.myhostname,
		MailName:   s.set.mailName,
		Protocol:   s.receivedProto(),
		TLS:        s.receivedTLS(),
		QueueID:    tx.id,
		Recipients: rcpts,
		Time:       now,
	}
	s.authReceived(&ri)
	opts.Received = cleanup.FormatReceived(ri)
	if s.srv.cleanup.AlwaysAddMissing {
		opts.AddMissing = &cleanup.Missing{Time: now, Sender: tx.mail.From.Addr, MyHostname: s.set.myhostname}
	}
	opts.RewriteHeader = s.headerRewrite()
	log := s.log
	opts.Log = func(rec string) { log.Info("%s", rec) }
	f := cleanup.New(tx.w, opts)
	tap := &msgTap{w: f}
	for _, d := range tx.actions {
		for _, h := range d.Prepend {
			_, _ = tap.w.Write([]byte(h + "\r\n"))
		}
	}
	return f, tap
}

// headerRewrite chooses cleanup's header address rewriting for this
// client (postconf(5) local_header_rewrite_clients,
// remote_header_rewrite_domain): nil when headers stay as received. A
// table that fails makes the message fail too, with a temporary error,
// where Postfix answers MAIL FROM with "451 4.3.0 Temporary lookup error".
func (s *session) headerRewrite() func(string) (string, error) {
	rw := s.srv.d.Rewrite
	if rw == nil {
		return nil
	}
	// No SASL or client certificates yet: those items never permit.
	ctx, warnings, err := rw.HeaderContextFor(rewrite.Client{Addr: s.client.Addr})
	for _, w := range warnings {
		s.log.Warning("%s", w)
	}
	if err != nil {
		s.log.Warning("%v", err)
		return func(string) (string, error) { return "", err }
	}
	return rw.HeaderFunc(ctx)
}

// finish closes the filter, applies its decisions and the policy's, commits
// the queue file and only then answers 250 (issue 3: acknowledged means
// durable).
func (s *session) finish(f *cleanup.Filter, tap *msgTap, size int64, bdat bool) (bool, error) {
	tx := s.tx
	if err := f.Close(); err != nil || tap.err != nil {
		if err == nil {
			err = tap.err
		}
		s.log.Warning("%s: queue file write error: %v", tx.id, err)
		s.abortTx()
		s.reply(replyWriteError)
		return false, nil
	}
	s.log.Info("%s", maillog.MessageID(tx.id, tap.messageID()))
	res := f.Result()
	if res.TooManyHops {
		s.abortTx()
		s.reply(smtp.NewReply(554, "5.4.0", "Error: too many hops"))
		return false, nil
	}
	if res.Reject != "" {
		s.abortTx()
		s.reply(contentReject(res.Reject))
		return false, nil
	}
	tx.size = size
	if d, refused := s.decide(StageEndOfData, ""); refused {
		s.rejectWith(d, "")
		s.abortTx()
		return false, nil
	} else {
		s.addActions(d, "")
	}
	env := queue.Envelope{
		Sender:     tx.mail.From.Addr,
		Recipients: tx.rcpts,
		EnvID:      tx.mail.EnvID,
		Ret:        tx.mail.Ret,
		ClientName: s.clientName(),
		ClientAddr: maillog.AddrString(s.client.Addr),
		Helo:       s.helo,
		Protocol:   s.proto,
		MessageID:  tap.messageID(),
	}
	if tx.mail.SMTPUTF8 {
		env.Flags |= queue.FlagSMTPUTF8
	}
	if tx.mail.Body == "8BITMIME" {
		env.Flags |= queue.Flag8BitMIME
	}
	discard := res.Discard
	if res.Hold {
		env.Flags |= queue.FlagHold
	}
	redirect := res.Redirect
	// content_filter, unless a FILTER action chose another: a policy's
	// at RCPT time, then header_checks' (the last one wins, access(5)).
	filter := s.set.contentFilter
	for _, d := range tx.actions {
		switch {
		case d.Discard:
			discard = true
		case d.Hold:
			env.Flags |= queue.FlagHold
		}
		if d.Redirect != "" && redirect == "" {
			redirect = d.Redirect
		}
		if d.Filter != "" {
			filter = d.Filter
		}
	}
	if res.Filter != "" {
		filter = res.Filter
	}
	env.Filter = filter
	if redirect != "" {
		env.Recipients = []queue.Recipient{{Address: redirect}}
	}
	for _, b := range res.BCC {
		env.Recipients = append(env.Recipients, queue.Recipient{Address: b})
	}
	id := tx.id
	ok := queuedReply(id, size, bdat)
	if discard {
		s.abortTx()
		s.messageDone()
		s.reply(ok)
		return true, nil
	}
	if rw := s.srv.d.Rewrite; rw != nil {
		// cleanup(8) rewrites every recipient it receives, those of
		// REDIRECT and always_bcc included. A lookup problem or a
		// limit is its CLEANUP_STAT_WRITE, which smtpd reports as a
		// queue file write error.
		if err := rw.Envelope(&env); err != nil {
			s.log.Warning("%s: %v", id, err)
			s.abortTx()
			s.reply(replyWriteError)
			return false, nil
		}
	}
	tx.w.Envelope = env
	cid, err := tx.w.Commit()
	tx.w = nil
	s.tx = nil
	if err != nil {
		s.log.Warning("%s: queue file write error: %v", id, err)
		s.reply(replyWriteError)
		return false, nil
	}
	if cid != id {
		ok = queuedReply(cid, size, bdat)
	}
	if c := s.srv.d.Committed; c != nil {
		c(cid)
	}
	s.messageDone()
	s.reply(ok)
	return true, nil
}

func queuedReply(id string, size int64, bdat bool) smtp.Reply {
	if bdat {
		return smtp.NewReply(250, "2.0.0", fmt.Sprintf("Ok: %d bytes queued as %s", size, id))
	}
	return smtp.NewReply(250, "2.0.0", "Ok: queued as "+id)
}

// messageDone resets the error and junk counts after a message was accepted:
// smtpd_soft_error_limit and the junk limit count errors "without
// delivering mail" (postconf(5)).
func (s *session) messageDone() {
	s.errors, s.junk = 0, 0
}

// addActions keeps a policy decision's actions for the end of the message
// and logs each as Postfix does when the restriction fires: "ID: hold: RCPT
// from CLIENT: REASON; from=<s> to=<r> proto=ESMTP helo=<h>".
func (s *session) addActions(d *Decision, rcpt string) {
	if d == nil {
		return
	}
	s.tx.actions = append(s.tx.actions, d)
	env := s.envelope(rcpt)
	// Postfix logs the restriction's reason ("Sender address triggers
	// FILTER text:text"); the bare target stands in only without one.
	logIt := func(action, target string) {
		reason := d.Reason
		if reason == "" {
			reason = target
		}
		s.log.Info("%s", maillog.Whatsup(s.queueID(), action, s.state, s.client, reason, env))
	}
	if d.Discard {
		logIt("discard", "")
	}
	if d.Hold {
		logIt("hold", "")
	}
	if d.Redirect != "" {
		logIt("redirect", d.Redirect)
	}
	if d.Filter != "" {
		logIt("filter", d.Filter)
	}
}

// contentReject turns cleanup's "5.7.1 text" into the reply Postfix's smtpd
// sends for a header/body_checks REJECT: 550, or 451 for a 4.x.x code.
func contentReject(text string) smtp.Reply {
	code, enh := 550, "5.7.1"
	if f, rest, ok := strings.Cut(text, " "); ok && len(f) >= 5 && (f[0] == '4' || f[0] == '5') && f[1] == '.' {
		enh, text = f, rest
		if f[0] == '4' {
			code = 451
		}
	}
	return smtp.NewReply(code, enh, text)
}

// maxMessageIDLen bounds the Message-ID value kept for the log and queue
// file (RFC 5322 lines are at most 998 bytes).
const maxMessageIDLen = 998

// msgTap sits between the DATA/BDAT reader and cleanup: it remembers the
// first write error (a full queue file system), so a write failure is told
// apart from a lost connection, and picks the Message-ID header's value out
// of the primary header block for the "message-id=" record, which cleanup
// does not expose.
type msgTap struct {
	w   io.Writer
	err error

	body      bool // past the header block
	line      []byte
	collect   bool
	msgID     []byte
	haveMsgID bool
}

func (t *msgTap) Write(p []byte) (int, error) {
	if !t.body {
		t.scan(p)
	}
	if t.err != nil {
		return len(p), nil
	}
	n, err := t.w.Write(p)
	if err != nil {
		t.err = err
		return len(p), nil
	}
	return n, nil
}

func (t *msgTap) scan(p []byte) {
	for len(p) > 0 && !t.body {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxMessageIDLen + 16 - len(t.line); room > 0 {
			if len(chunk) > room {
				t.line = append(t.line, chunk[:room]...)
			} else {
				t.line = append(t.line, chunk...)
			}
		}
		if i < 0 {
			return
		}
		t.headerLine(bytes.TrimSuffix(t.line, []byte("\r")))
		t.line = t.line[:0]
		p = p[i+1:]
	}
}

func (t *msgTap) headerLine(l []byte) {
	switch {
	case len(l) == 0:
		t.body, t.collect = true, false
		t.line = nil
	case l[0] == ' ' || l[0] == '\t':
		if t.collect && len(t.msgID) < maxMessageIDLen {
			t.msgID = append(t.msgID, bytes.TrimSpace(l)...)
		}
	case !t.haveMsgID && len(l) >= 11 && strings.EqualFold(string(l[:10]), "message-id") &&
		bytes.HasPrefix(bytes.TrimLeft(l[10:], " \t"), []byte(":")):
		v := bytes.TrimLeft(l[10:], " \t")
		t.msgID = append(t.msgID[:0], bytes.TrimSpace(v[1:])...)
		t.collect, t.haveMsgID = true, true
	default:
		t.collect = false
	}
}

func (t *msgTap) messageID() string {
	if len(t.msgID) > maxMessageIDLen {
		return string(t.msgID[:maxMessageIDLen])
	}
	return string(t.msgID)
}
