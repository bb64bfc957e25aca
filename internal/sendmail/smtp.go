package sendmail

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"moat/internal/maildrop"
	"moat/internal/postdrop"
	"moat/internal/smtp"
)

// smtp is -bs: an SMTP dialogue on standard input and output (sendmail(1):
// "Stand-alone SMTP server mode"), for programs that submit that way
// (some MUAs, Exim-style scripts). Postfix runs its smtpd(8) with relay
// restrictions off; moat speaks the subset a local submitter needs (HELO,
// EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) with internal/smtp's readers,
// and each message goes through postdrop like any other submission. The
// sender of MAIL FROM counts as -f, so local_login_sender_maps applies.
func (r *run) smtp(in io.Reader, out io.Writer) int {
	br := bufio.NewReader(in)
	bw := bufio.NewWriter(out)
	limit, err := r.cfg.Size("message_size_limit")
	if err != nil {
		return r.fatal(postdrop.ExConfig, "%v", err)
	}
	host := r.cfg.Get("myhostname")
	offered := smtp.Options{DSN: true, SizeLimit: limit}
	reply := func(rep smtp.Reply) {
		rep.WriteTo(bw)
		if br.Buffered() == 0 {
			bw.Flush()
		}
	}
	reply(smtp.NewReply(220, "", r.cfg.Get("smtpd_banner")))
	var mail *smtp.Mail
	var rcpts []string
	var notify string
	helo := false
	for {
		line, err := smtp.ReadCommand(br, 2048, smtp.BareNewlineNo, 0)
		if errors.Is(err, smtp.ErrLineTooLong) {
			reply(smtp.NewReply(500, "5.5.2", "Error: line too long"))
			continue
		}
		if err != nil {
			bw.Flush()
			return 0 // the client went away, as after QUIT
		}
		verb, _, _ := strings.Cut(strings.TrimLeft(line, " "), " ")
		switch strings.ToUpper(verb) {
		case "HELO":
			mail, rcpts, helo = nil, nil, true
			reply(smtp.NewReply(250, "", host))
		case "EHLO":
			mail, rcpts, helo = nil, nil, true
			reply(smtp.Reply{Code: 250, Lines: []string{host, "PIPELINING",
				fmt.Sprintf("SIZE %d", limit), "ENHANCEDSTATUSCODES", "8BITMIME", "DSN"}})
		case "MAIL":
			switch {
			case !helo:
				reply(smtp.NewReply(503, "5.5.1", "Error: send HELO/EHLO first"))
			case mail != nil:
				reply(smtp.NewReply(503, "5.5.1", "Error: nested MAIL command"))
			default:
				m, err := smtp.ParseMail(smtp.Tokenize(line), offered)
				if err != nil {
					reply(replyOf(err))
					continue
				}
				if m.Body == "BINARYMIME" {
					m.Body = ""
				}
				mail = &m
				reply(smtp.NewReply(250, "2.1.0", "Ok"))
			}
		case "RCPT":
			if mail == nil {
				reply(smtp.NewReply(503, "5.5.1", "Error: need MAIL command"))
				continue
			}
			rc, err := smtp.ParseRcpt(smtp.Tokenize(line), offered)
			if err != nil {
				reply(replyOf(err))
				continue
			}
			if rc.To.Addr == "" {
				reply(smtp.NewReply(501, "5.1.3", "Bad recipient address syntax"))
				continue
			}
			rcpts = append(rcpts, rc.To.Addr)
			if rc.Notify != 0 {
				notify = strings.ToLower(rc.Notify.String())
			}
			reply(smtp.NewReply(250, "2.1.5", "Ok"))
		case "DATA":
			if mail == nil || len(rcpts) == 0 {
				if mail == nil {
					reply(smtp.NewReply(503, "5.5.1", "Error: need RCPT command"))
				} else {
					reply(smtp.NewReply(554, "5.5.1", "Error: no valid recipients"))
				}
				continue
			}
			reply(smtp.NewReply(354, "", "End data with <CR><LF>.<CR><LF>"))
			bw.Flush()
			rep, fatal := r.smtpData(br, mail, rcpts, notify, limit)
			mail, rcpts, notify = nil, nil, ""
			reply(rep)
			if fatal {
				bw.Flush()
				return 0
			}
		case "RSET":
			mail, rcpts, notify = nil, nil, ""
			reply(smtp.NewReply(250, "2.0.0", "Ok"))
		case "NOOP":
			reply(smtp.NewReply(250, "2.0.0", "Ok"))
		case "QUIT":
			reply(smtp.NewReply(221, "2.0.0", "Bye"))
			bw.Flush()
			return 0
		case "VRFY":
			reply(smtp.NewReply(502, "5.5.1", "VRFY command is disabled"))
		default:
			reply(smtp.NewReply(502, "5.5.2", "Error: command not recognized"))
		}
	}
}

// smtpData reads one message and drops it; fatal means the input ended
// or broke mid-message.
func (r *run) smtpData(br *bufio.Reader, m *smtp.Mail, rcpts []string, notify string, limit int64) (smtp.Reply, bool) {
	save := *r.opts
	defer func() { *r.opts = save }()
	r.opts.sender, r.opts.senderGiven = m.From.Addr, true
	r.opts.envID, r.opts.ret, r.opts.body, r.opts.notify = m.EnvID, m.Ret, m.Body, notify
	env, err := r.envelope(rcpts)
	var s *sink
	if err == nil {
		s, err = r.open()
	}
	var mw *maildrop.Writer
	if err == nil {
		mw, err = maildrop.NewWriter(s.w, env, limit)
	}
	dst := &errWriter{}
	if err != nil {
		dst.err = err
	} else {
		dst.w = mw
	}
	_, rerr := smtp.ReadData(br, dst, smtp.DataOptions{SizeLimit: limit})
	if rerr != nil {
		if s != nil {
			s.abort()
		}
		if rep, ok := smtp.ReplyOf(rerr); ok {
			return rep, false
		}
		return smtp.NewReply(421, "4.4.2", "Error: lost connection"), true
	}
	if dst.err == nil {
		dst.err = mw.Close()
	}
	if dst.err != nil {
		if s != nil {
			s.abort()
		}
		if errors.Is(dst.err, maildrop.ErrTooBig) {
			return smtp.NewReply(552, "5.3.4", "Error: message file too big"), false
		}
		fmt.Fprintf(r.env.Stderr, "%s: warning: %v\n", r.prog, dst.err)
		if postdrop.Status(dst.err) == postdrop.ExNoPerm {
			return smtp.NewReply(553, "5.7.1", dst.err.Error()), false
		}
		return smtp.NewReply(451, "4.3.0", "Error: queue file write error"), false
	}
	s.w.Close()
	if status, err := s.wait(); status != 0 {
		if status == postdrop.ExNoPerm {
			return smtp.NewReply(553, "5.7.1", "Error: not authorized to submit this message"), false
		}
		if err != nil && r.canWrite() {
			fmt.Fprintf(r.env.Stderr, "%s: warning: %v\n", r.prog, err)
		}
		return smtp.NewReply(451, "4.3.0", "Error: queue file write error"), false
	}
	return smtp.NewReply(250, "2.0.0", "Ok: queued"), false
}

// errWriter keeps the DATA reader in sync after a write error: it
// remembers the first error and swallows the rest of the message.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err == nil {
		if _, err := e.w.Write(p); err != nil {
			e.err = err
		}
	}
	return len(p), nil
}

// replyOf is the reply to a refused MAIL or RCPT.
func replyOf(err error) smtp.Reply {
	if rep, ok := smtp.ReplyOf(err); ok {
		return rep
	}
	return smtp.NewReply(501, "5.5.4", "Syntax error")
}
