package smtpd

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"moat/internal/maillog"
	"moat/internal/queue"
	"moat/internal/smtp"
)

// Replies used in several places, in Postfix's wording.
var (
	replyOK          = smtp.NewReply(250, "2.0.0", "Ok")
	replyNeedHelo    = smtp.NewReply(503, "5.5.1", "Error: send HELO/EHLO first")
	replyNeedMail    = smtp.NewReply(503, "5.5.1", "Error: need MAIL command")
	replyNeedRcpt    = smtp.NewReply(503, "5.5.1", "Error: need RCPT command")
	replyNoRcpts     = smtp.NewReply(554, "5.5.1", "Error: no valid recipients")
	replyUnknown     = smtp.NewReply(500, "5.5.2", "Error: command not recognized")
	replyWriteError  = smtp.NewReply(451, "4.3.0", "Error: queue file write error")
	replyConfigError = smtp.NewReply(451, "4.3.5", "Server configuration error")
)

// dispatch runs one command and reports whether it succeeded (for the
// disconnect record's counters); a non-nil error ends the session.
func (s *session) dispatch(name, line, arg string) (bool, error) {
	if s.mustStartTLS(name) {
		return false, nil
	}
	switch name {
	case "helo":
		return s.hello(arg, false), nil
	case "ehlo":
		return s.hello(arg, true), nil
	case "mail":
		return s.mailCmd(line), nil
	case "rcpt":
		return s.rcptCmd(line), nil
	case "data":
		return s.dataCmd(arg)
	case "bdat":
		return s.bdatCmd(line)
	case "rset":
		s.junkCommand()
		if arg != "" {
			s.reply(smtp.NewReply(501, "5.5.4", "Syntax: RSET"))
			return false, nil
		}
		s.abortTx()
		s.reply(replyOK)
		return true, nil
	case "noop":
		s.junkCommand()
		s.reply(replyOK)
		return true, nil
	case "quit":
		s.write(smtp.NewReply(221, "2.0.0", "Bye"))
		return true, errEndSession
	case "vrfy":
		return s.vrfyCmd(line), nil
	case "etrn":
		return s.etrnCmd(arg), nil
	case "auth":
		return s.authCmd(arg)
	case "starttls":
		return s.starttlsCmd(arg)
	}
	// HELP and EXPN are not implemented by Postfix either.
	if strings.TrimSpace(line) == "" {
		s.reply(smtp.NewReply(500, "5.5.2", "Error: bad syntax"))
		return false, nil
	}
	s.reply(replyUnknown)
	return false, nil
}

// junkCommand counts NOOP, VRFY, ETRN and RSET: past
// smtpd_junk_command_limit each counts as an error, so a client cannot keep
// a session open forever without sending mail (postconf(5)).
func (s *session) junkCommand() {
	// Postfix's test is "junk_cmds++ > limit": the first error is the
	// command after limit+1 of them.
	if s.junk > s.set.junkLimit {
		s.errors++
	}
	s.junk++
}

// hello is HELO and EHLO (RFC 5321 §4.1.1.1). Either ends a transaction in
// progress.
func (s *session) hello(arg string, extended bool) bool {
	if arg == "" {
		if extended {
			s.reply(smtp.Reply{Code: 501, Lines: []string{"Syntax: EHLO hostname"}})
		} else {
			s.reply(smtp.Reply{Code: 501, Lines: []string{"Syntax: HELO hostname"}})
		}
		return false
	}
	if s.connDecision.Refuses() {
		s.rejectWith(s.connDecision, "")
		return false
	}
	s.abortTx()
	// The name goes into Received: and the queue file: control bytes
	// (a bare CR survives the command reader) must not.
	s.helo = s.printable(arg)
	s.proto = "SMTP"
	s.pipeline = false
	s.offered = smtp.Options{Strict: s.set.strict821, SizeLimit: s.set.sizeLimit}
	if extended {
		s.proto = "ESMTP"
	}
	if !s.set.delayReject {
		d, refused := s.decide(StageHelo, "")
		if refused {
			s.rejectWith(d, "")
			// As in Postfix, a refused HELO does not count as a
			// greeting for smtpd_helo_required.
			s.helo, s.proto = "", ""
			return false
		}
		s.heloDecision = d
	}
	if !extended {
		s.reply(smtp.Reply{Code: 250, Lines: []string{s.set.myhostname}})
		return true
	}
	lines := []string{s.set.myhostname}
	offer := func(keyword, line string) bool {
		if s.set.discardEHLO[keyword] {
			return false
		}
		lines = append(lines, line)
		return true
	}
	s.pipeline = offer("PIPELINING", "PIPELINING")
	if s.set.sizeLimit > 0 {
		offer("SIZE", fmt.Sprintf("SIZE %d", s.set.sizeLimit))
	} else {
		offer("SIZE", "SIZE")
	}
	if !s.set.disableVRFY {
		offer("VRFY", "VRFY")
	}
	offer("ETRN", "ETRN")
	if s.offerSTARTTLS() {
		offer("STARTTLS", "STARTTLS")
	}
	s.offerAuth(offer)
	offer("ENHANCEDSTATUSCODES", "ENHANCEDSTATUSCODES")
	offer("8BITMIME", "8BITMIME")
	s.offered.DSN = offer("DSN", "DSN")
	if s.set.smtputf8 {
		s.offered.SMTPUTF8 = offer("SMTPUTF8", "SMTPUTF8")
	}
	offer("CHUNKING", "CHUNKING")
	s.reply(smtp.Reply{Code: 250, Lines: lines})
	return true
}

// chunking reports whether BDAT was offered.
func (s *session) chunking() bool {
	return s.proto == "ESMTP" && !s.set.discardEHLO["CHUNKING"]
}

// mailCmd is MAIL FROM (RFC 5321 §4.1.1.2).
func (s *session) mailCmd(line string) bool {
	if s.set.heloRequired && s.helo == "" {
		s.reply(replyNeedHelo)
		return false
	}
	if s.tx != nil {
		if s.tx.bdatUsed {
			s.reply(smtp.NewReply(503, "5.5.1", "Error: MAIL after BDAT"))
		} else {
			s.reply(smtp.NewReply(503, "5.5.1", "Error: nested MAIL command"))
		}
		return false
	}
	m, err := smtp.ParseMail(smtp.Tokenize(line), s.offered)
	if err != nil {
		s.replyErr(err)
		return false
	}
	if s.set.strictSMTPUTF8 && !m.SMTPUTF8 && !m.From.ASCII() {
		s.reply(smtp.UnicodeAddressReply())
		return false
	}
	if !s.anvilMail() {
		return false
	}
	if r, short := s.lowOnSpace(); short {
		s.reply(r)
		return false
	}
	if s.connDecision.Refuses() {
		s.rejectWith(s.connDecision, "")
		return false
	}
	if s.heloDecision.Refuses() {
		s.rejectWith(s.heloDecision, "")
		return false
	}
	s.txSeq++
	s.tx = &transaction{mail: m, size: -1, instance: fmt.Sprintf("%x.%x.%x.%x",
		os.Getpid(), s.start.UnixNano(), s.client.Port, s.txSeq)}
	if !s.set.delayReject {
		d, refused := s.decide(StageMail, "")
		if refused {
			s.rejectWith(d, "")
			s.tx = nil
			return false
		}
		if !d.discards() {
			if u, refused := s.unlistedSender(); refused {
				s.rejectWith(u, "")
				s.tx = nil
				return false
			}
		}
		for _, k := range []*Decision{s.connDecision, s.heloDecision, d} {
			s.addActions(k, "")
		}
	}
	s.reply(smtp.NewReply(250, "2.1.0", "Ok"))
	return true
}

// lowOnSpace applies queue_minfree: MAIL is refused while the queue file
// system has less free space than max(queue_minfree, 1.5 ×
// message_size_limit), so a message that is accepted can also be stored
// (postconf(5) queue_minfree).
func (s *session) lowOnSpace() (smtp.Reply, bool) {
	need := s.set.queueMinfree
	if alt := s.set.sizeLimit + s.set.sizeLimit/2; alt > need {
		need = alt
	}
	if need <= 0 {
		return smtp.Reply{}, false
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.srv.d.Queue.Dir(), &st); err != nil {
		s.log.Warning("statfs %s: %v", s.srv.d.Queue.Dir(), err)
		return smtp.Reply{}, false
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return smtp.NewReply(452, "4.3.1", "Insufficient system storage"), true
	}
	return smtp.Reply{}, false
}

// rcptCmd is RCPT TO (RFC 5321 §4.1.1.3). The first accepted recipient
// creates the queue file, and its ID is logged with "client=", as Postfix
// does.
func (s *session) rcptCmd(line string) bool {
	if s.tx == nil {
		s.reply(replyNeedMail)
		return false
	}
	if s.tx.bdatUsed {
		s.reply(smtp.NewReply(503, "5.5.1", "Error: RCPT after BDAT"))
		return false
	}
	r, err := smtp.ParseRcpt(smtp.Tokenize(line), s.offered)
	if err != nil {
		s.replyErr(err)
		return false
	}
	if s.set.strictSMTPUTF8 && !s.tx.mail.SMTPUTF8 && !r.To.ASCII() {
		s.reply(smtp.UnicodeAddressReply())
		return false
	}
	if s.set.rcptLimit > 0 && len(s.tx.rcpts) >= s.set.rcptLimit {
		s.reply(smtp.NewReply(452, "4.5.3", "Error: too many recipients"))
		return false
	}
	if !s.anvilRcpt() {
		return false
	}
	ext := r.To.Quoted()
	if !s.rcptPolicy(r.To.Addr, ext) {
		return false
	}
	if s.tx.w == nil {
		w, err := s.srv.d.Queue.NewMessage()
		if err != nil {
			s.log.Warning("%s: create queue file: %v", maillog.NoQueue, err)
			s.reply(replyWriteError)
			return false
		}
		s.tx.w, s.tx.id = w, w.ID()
		s.log.Info("%s", maillog.ClientLine(s.tx.id, s.client, s.authClientInfo()))
	}
	rc := queue.Recipient{Address: r.To.Addr, Notify: r.Notify}
	if r.HasORcpt {
		rc.ORCPT = r.ORcptType + ";" + r.ORcpt
	}
	s.tx.rcpts = append(s.tx.rcpts, rc)
	s.tx.addrs = append(s.tx.addrs, ext)
	s.reply(smtp.NewReply(250, "2.1.5", "Ok"))
	return true
}

// rcptPolicy asks the Policy about a recipient; with smtpd_delay_reject the
// client, HELO and sender stages are asked here too, so that the reject
// record names the recipient (postconf(5) smtpd_delay_reject).
func (s *session) rcptPolicy(addr, ext string) bool {
	stages := []Stage{StageRcpt}
	if s.set.delayReject {
		stages = []Stage{StageConnect, StageHelo, StageMail, StageRcpt}
	}
	var keep []*Decision
	first := len(s.tx.rcpts) == 0
	for _, st := range stages {
		if st == StageHelo && s.helo == "" {
			continue
		}
		d, refused := s.decide(st, addr)
		if refused {
			s.rejectWith(d, ext)
			return false
		}
		// Actions from the client, HELO and sender stages are kept once
		// per transaction, not once per recipient.
		if d != nil && (st == StageRcpt || first) {
			keep = append(keep, d)
		}
		// Postfix's smtpd_check_mail() ends with the unlisted-sender
		// check, and runs at RCPT when smtpd_delay_reject is on.
		if st == StageMail && !s.discarding(keep) {
			if u, refused := s.unlistedSender(); refused {
				s.rejectWith(u, ext)
				return false
			}
		}
	}
	// The implicit unlisted-recipient check comes after the
	// restrictions permitted, and not for a message already to be
	// discarded (smtpd_check_rcpt()).
	if !s.discarding(keep) {
		if u, refused := s.unlisted(addr, ext); refused {
			s.rejectWith(u, ext)
			return false
		}
	}
	for _, d := range keep {
		s.addActions(d, ext)
	}
	return true
}

// vrfyCmd is VRFY (RFC 5321 §3.5.1). Enabled or not, it never discloses
// whether a mailbox exists: 252 says "cannot verify, will try delivery".
func (s *session) vrfyCmd(line string) bool {
	s.junkCommand()
	if s.set.disableVRFY {
		s.reply(smtp.NewReply(502, "5.5.1", "VRFY command is disabled"))
		return false
	}
	if s.set.heloRequired && s.helo == "" {
		s.reply(replyNeedHelo)
		return false
	}
	toks := smtp.Tokenize(line)
	if len(toks) < 2 {
		s.reply(smtp.NewReply(501, "5.5.4", "Syntax: VRFY address"))
		return false
	}
	s.reply(smtp.NewReply(252, "2.0.0", s.printable(toks[1].Value)))
	return true
}

// etrnCmd is ETRN (RFC 1985). moat has no fast-flush service yet, so every
// domain gets Postfix's answer for a domain outside fast_flush_domains.
func (s *session) etrnCmd(arg string) bool {
	s.junkCommand()
	if s.set.heloRequired && s.helo == "" {
		s.reply(smtp.Reply{Code: 503, Lines: []string{"Error: send HELO/EHLO first"}})
		return false
	}
	if s.tx != nil {
		s.reply(smtp.Reply{Code: 503, Lines: []string{"Error: MAIL transaction in progress"}})
		return false
	}
	toks := smtp.Tokenize(arg)
	if len(toks) != 1 {
		s.reply(smtp.Reply{Code: 500, Lines: []string{"Syntax: ETRN domain"}})
		return false
	}
	// smtpd_etrn_restrictions see the argument as given (smtpd_check_etrn()
	// is called with it before the fast-flush service is asked).
	if p := s.srv.d.Policy; p != nil {
		v := s.view(StageEtrn, "")
		v.EtrnDomain = toks[0].Value
		d, err := p.Check(s.ctx, StageEtrn, v)
		if err != nil {
			s.log.Warning("%s: %s restriction failed: %v", s.client, StageEtrn, err)
			d = &Decision{Reply: replyConfigError}
		}
		if d.Refuses() {
			s.rejectWith(d, "")
			return false
		}
	}
	dom := strings.TrimPrefix(toks[0].Value, "@")
	dom = strings.TrimPrefix(dom, "#")
	s.reply(smtp.Reply{Code: 459, Lines: []string{"<" + s.printable(dom) + ">: service unavailable"}})
	return false
}

// replyErr answers a parse error with the reply it carries.
func (s *session) replyErr(err error) {
	if r, ok := smtp.ReplyOf(err); ok {
		s.reply(r)
		return
	}
	s.log.Warning("%s: %v", s.client, err)
	s.reply(smtp.NewReply(501, "5.5.4", "Error: bad syntax"))
}

// decide asks the Policy about a stage; refused reports a 4xx/5xx decision.
func (s *session) decide(st Stage, rcpt string) (*Decision, bool) {
	p := s.srv.d.Policy
	if p == nil {
		return nil, false
	}
	d, err := p.Check(s.ctx, st, s.view(st, rcpt))
	if err != nil {
		s.log.Warning("%s: %s restriction failed: %v", s.client, st, err)
		return &Decision{Reply: replyConfigError}, true
	}
	return d, d.Refuses()
}

func (s *session) view(st Stage, rcpt string) *View {
	v := &View{
		Service:    s.srv.d.Service,
		ClientName: s.clientName(),
		ClientAddr: s.client.Addr,
		ClientPort: s.client.Port,
		Helo:       s.helo,
		Protocol:   s.proto,
		Recipient:  rcpt,
		Size:       -1,
		TLS:        s.tlsView(),
		ServerAddr: s.server.Addr(),
		ServerPort: s.server.Port(),
	}
	s.peerView(v)
	s.authView(v)
	if s.tx != nil {
		v.Sender, v.HasSender = s.tx.mail.From.Addr, true
		v.Size = s.tx.mail.Size
		if s.tx.size >= 0 {
			v.Size = s.tx.size
		}
		v.QueueID = s.tx.id
		v.Instance = s.tx.instance
		for _, r := range s.tx.rcpts {
			v.Recipients = append(v.Recipients, r.Address)
		}
	}
	return v
}

// rejectWith sends a policy refusal and logs it as Postfix's "reject" record.
func (s *session) rejectWith(d *Decision, rcpt string) {
	s.log.Info("%s", maillog.Reject(s.queueID(), s.state, s.client, d.Reply.String(), s.envelope(rcpt)))
	s.reply(d.Reply)
}

// clientName is the name for Received: and the queue file.
func (s *session) clientName() string {
	if s.client.Name == "" {
		return "unknown"
	}
	return s.client.Name
}

// printable replaces control characters in client text that is echoed in a
// reply or stored (Postfix's printable()), so a client cannot break reply
// framing or header syntax; valid UTF-8 stays when SMTPUTF8 is on.
func (s *session) printable(v string) string {
	return maillog.Printable(v, s.set.smtputf8)
}
