package qmgr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"moat/internal/config"
	"moat/internal/queue"
)

// dsnSettings are the bounce(8) parameters (postconf(5)): who gets the
// postmaster copies, which classes of them (notify_classes), and how
// much of the original message a notice returns (bounce_size_limit).
type dsnSettings struct {
	// sizeLimit is bounce_size_limit: a message larger than this is
	// returned as its headers only.
	sizeLimit int64
	// classes is notify_classes, lower-cased ("bounce", "2bounce",
	// "delay", ...).
	classes map[string]bool
	// bounceRcpt, twoBounceRcpt are bounce_notice_recipient and
	// 2bounce_notice_recipient, qualified with myorigin as cleanup would.
	bounceRcpt, twoBounceRcpt string
	// delayRcpt is delay_notice_recipient, qualified the same way.
	delayRcpt string
	// doubleBounce is double_bounce_sender@myhostname, the envelope
	// sender of postmaster notices (Postfix's mail_addr_double_bounce): a
	// notice from it that fails is dropped, never answered.
	doubleBounce string
}

// loadDSNSettings reads the bounce(8) parameters.
func loadDSNSettings(cfg *config.Config) (dsnSettings, error) {
	var s dsnSettings
	var err error
	if s.sizeLimit, err = cfg.Size("bounce_size_limit"); err != nil {
		return s, fmt.Errorf("qmgr: bounce_size_limit: %w", err)
	}
	classes, err := cfg.List("notify_classes")
	if err != nil {
		return s, fmt.Errorf("qmgr: notify_classes: %w", err)
	}
	s.classes = map[string]bool{}
	for _, c := range classes {
		s.classes[strings.ToLower(c)] = true
	}
	origin := cfg.Get("myorigin")
	qualify := func(a string) string {
		if a != "" && !strings.Contains(a, "@") {
			return a + "@" + origin
		}
		return a
	}
	s.bounceRcpt = qualify(cfg.Get("bounce_notice_recipient"))
	s.twoBounceRcpt = qualify(cfg.Get("2bounce_notice_recipient"))
	s.delayRcpt = qualify(cfg.Get("delay_notice_recipient"))
	s.doubleBounce = cfg.Get("double_bounce_sender") + "@" + cfg.Get("myhostname")
	return s, nil
}

// dsnKind says which of bounce(8)'s templates a notice uses.
type dsnKind int

const (
	dsnFailure dsnKind = iota // failure_template, Action: failed
	dsnDelay                  // delay_template, Action: delayed
	// dsnVerify is verify_template, the report of a sendmail -bv request
	// (bounce_trace_service.c): Action: deliverable or undeliverable,
	// Postfix's own words for a user-requested verification (bounce.c,
	// defer.c and sent.c under DEL_REQ_FLAG_USR_VRFY), outside RFC 3464
	// section 2.3.3's list, which has no verdict without a delivery.
	dsnVerify
)

// dsnNotice is one notice to build: who it goes to, and which template
// and returned content it has.
type dsnNotice struct {
	kind dsnKind
	to   string
	// postmaster: a copy for the postmaster (Postmaster-Subject).
	postmaster bool
	// headersOnly returns text/rfc822-headers even when the sender asked
	// RET=FULL (postmaster copies, as Postfix).
	headersOnly bool
}

// failureText is the text of Postfix's default failure_template
// (bounce(5), postconf -b), after "This is the mail system at host
// $myhostname."; delayText (warn.go) is delay_template's.
var (
	failureText = slices.Concat([]string{
		"I'm sorry to have to inform you that your message could not",
		"be delivered to one or more recipients. It's attached below.",
		"",
	}, signOff)
	// signOff ends failure_template and delay_template alike.
	signOff = []string{
		"For further assistance, please send mail to postmaster.",
		"",
		"If you do so, please include this problem report. You can",
		"delete your own text from the attached returned message.",
		"",
		"                   The mail system",
	}
	// verifyText is verify_template's text (postconf -t verify_template).
	verifyText = []string{
		"Enclosed is the mail delivery report that you requested.",
		"",
		"                   The mail system",
	}
)

// subject is the template's Subject, or Postmaster-Subject for a
// postmaster copy (bounce(5)).
func (n dsnNotice) subject() string {
	switch {
	case n.kind == dsnVerify:
		return "Mail Delivery Status Report"
	case n.kind == dsnDelay && n.postmaster:
		return "Postmaster Warning: Delayed Mail"
	case n.kind == dsnDelay:
		return "Delayed Mail (still being retried)"
	case n.postmaster:
		return "Postmaster Copy: Undelivered Mail"
	default:
		return "Undelivered Mail Returned to Sender"
	}
}

// buildDSN writes an RFC 3464 delivery status notification about items of
// message id (its envelope env, its content read from content) as
// Postfix's bounce(8) lays one out (bounce_notify_util.c): a
// multipart/report (RFC 6522) with the human-readable text, the
// message/delivery-status part (RFC 3464 sections 2.2 and 2.3) and the
// returned message, whole (message/rfc822) or its header
// (text/rfc822-headers) when the sender asked RET=HDRS (RFC 3461 section
// 4.3) or the message is over bounce_size_limit.
func (m *Manager) buildDSN(id string, env *queue.Envelope, content io.Reader, items []bounceItem, n dsnNotice, extra []string) ([]byte, error) {
	now := m.now()
	host := m.set.myhostname
	boundary := fmt.Sprintf("%s.%d/%s", id, now.Unix(), host)
	var b bytes.Buffer
	// Every field comes from the envelope, a reason text or the
	// configuration: keep CR and LF out so none can add a header or end
	// the header block, or a part, and other controls out of the header
	// fields (RFC 5322 section 3.2.5 leaves them out of text).
	line := func(s string) { b.WriteString(dsnText(s) + "\r\n") }
	line("From: MAILER-DAEMON@" + host + " (Mail Delivery System)")
	line("Subject: " + n.subject())
	if n.kind == dsnVerify {
		// Postfix writes the bare address (bounce_template_headers);
		// moat's verification report has always had the angle-bracket
		// form, which its end-to-end tests expect. Both are the same
		// RFC 5322 address.
		line("To: <" + n.to + ">")
	} else {
		line("To: " + n.to)
	}
	line("Auto-Submitted: auto-replied")
	line("MIME-Version: 1.0")
	line("Content-Type: multipart/report; report-type=delivery-status;")
	line("\tboundary=\"" + boundary + "\"")
	line("Content-Transfer-Encoding: 8bit")
	line(fmt.Sprintf("Message-Id: <%d.%s@%s>", now.UnixNano(), id, host))
	line("Date: " + mailDate(now))
	line("")
	line("This is a MIME-encapsulated message.")
	line("")

	line("--" + boundary)
	line("Content-Description: Notification")
	line("Content-Type: text/plain; charset=utf-8")
	line("Content-Transfer-Encoding: 8bit")
	line("")
	line("This is the mail system at host " + host + ".")
	line("")
	for _, l := range extra {
		line(l)
	}
	text := failureText
	switch n.kind {
	case dsnDelay:
		text = m.delayText()
	case dsnVerify:
		text = verifyText
	}
	for _, l := range text {
		line(l)
	}
	line("")
	for _, it := range items {
		line(reasonLine(env.Recipients[it.index], it.res))
	}
	line("")

	line("--" + boundary)
	line("Content-Description: Delivery report")
	line("Content-Type: message/delivery-status")
	line("")
	line("Reporting-MTA: dns; " + host)
	if env.EnvID != "" {
		line("Original-Envelope-Id: " + env.EnvID)
	}
	line("X-Postfix-Queue-ID: " + id)
	line("X-Postfix-Sender: rfc822; " + env.Sender)
	if !env.Arrival.IsZero() {
		line("Arrival-Date: " + mailDate(env.Arrival))
	}
	for _, it := range items {
		line("")
		for _, f := range recipientFields(env.Recipients[it.index], it.res, n.kind) {
			line(f)
		}
		if n.kind == dsnDelay {
			line("Will-Retry-Until: " + mailDate(m.retryUntil(env)))
		}
	}
	line("")

	line("--" + boundary)
	full := !n.headersOnly && env.Ret != "HDRS" && env.Size <= m.set.dsn.sizeLimit
	// bounce_original says "Undelivered" only for failure and delay
	// reports: a verified message was never meant to be delivered.
	undelivered := "Undelivered "
	if n.kind == dsnVerify {
		undelivered = ""
	}
	if full {
		line("Content-Description: " + undelivered + "Message")
		line("Content-Type: message/rfc822")
		line("Content-Transfer-Encoding: 8bit")
	} else {
		line("Content-Description: " + undelivered + "Message Headers")
		line("Content-Type: text/rfc822-headers")
		line("Content-Transfer-Encoding: 8bit")
	}
	line("")
	if err := copyOriginal(&b, content, full, boundary); err != nil {
		return nil, fmt.Errorf("returning %s: %w", id, err)
	}
	line("")
	line("--" + boundary + "--")
	return b.Bytes(), nil
}

// reasonLine is one recipient's line in the human-readable part, as
// bounce(8) writes it: "<rcpt> (expanded from <orig>): REASON".
func reasonLine(rc queue.Recipient, r result) string {
	s := "<" + rc.Address + ">"
	if rc.Orig != "" && !strings.EqualFold(rc.Orig, rc.Address) {
		s += " (expanded from <" + rc.Orig + ">)"
	}
	return s + ": " + r.reason
}

// recipientFields are one recipient's per-recipient fields (RFC 3464
// section 2.3) in Postfix's order: Final-Recipient, Original-Recipient
// (the client's ORCPT, else the address before rewriting), Action (the
// kind's word; a verification's depends on the verdict), Status,
// Remote-MTA when a server answered, and Diagnostic-Code: the server's
// reply as "smtp; ...", else Postfix's own text as "X-Postfix; ...".
func recipientFields(rc queue.Recipient, r result, kind dsnKind) []string {
	f := []string{"Final-Recipient: rfc822; " + rc.Address}
	switch {
	case rc.ORCPT != "":
		f = append(f, "Original-Recipient: "+rc.ORCPT)
	case rc.Orig != "" && !strings.EqualFold(rc.Orig, rc.Address):
		f = append(f, "Original-Recipient: rfc822;"+rc.Orig)
	}
	action := "failed"
	switch {
	case kind == dsnDelay:
		action = "delayed"
	case kind == dsnVerify:
		action = verdictStatus(r)
	}
	f = append(f, "Action: "+action, "Status: "+r.dsn)
	if r.remoteMTA != "" {
		f = append(f, "Remote-MTA: dns; "+r.remoteMTA)
	}
	if r.diagnostic != "" {
		f = append(f, "Diagnostic-Code: "+r.diagnostic)
	} else {
		f = append(f, "Diagnostic-Code: X-Postfix; "+r.reason)
	}
	return f
}

// copyOriginal writes the returned message: whole, or up to the blank
// line that ends its header. A line that would read as the report's own
// boundary is indented by a space so that it cannot end the part early
// (the boundary has the queue ID and time in it, so only a message
// crafted with foresight could hold one).
func copyOriginal(w *bytes.Buffer, r io.Reader, full bool, boundary string) error {
	br := bufio.NewReader(r)
	for {
		l, err := br.ReadString('\n')
		if l != "" {
			body := strings.TrimRight(l, "\r\n")
			if !full && body == "" {
				break
			}
			if strings.HasPrefix(body, "--"+boundary) {
				body = " " + body
			}
			w.WriteString(body + "\r\n")
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// dsnText is s with CR and LF as spaces and every other control
// character but tab as '?', so that it is one line of header text.
func dsnText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\r' || r == '\n':
			return ' '
		case r == '\t':
			return r
		case r < 0x20 || r == 0x7f:
			return '?'
		}
		return r
	}, s)
}

// mailDate is Postfix's mail_date(3): RFC 5322 with the zone name in a
// comment, "Mon, 23 Nov 2026 01:12:00 +0000 (UTC)".
func mailDate(t time.Time) string {
	return t.Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)")
}

// commitNotice queues a notice (content, CRLF line ends) from sender to
// rcpt into incoming/ and logs it as bounce(8) does ("ID: KIND: NEWID").
// It goes to the queue like any message, so a remote sender's notice
// leaves through the smtp agent.
func (m *Manager) commitNotice(id, sender, rcpt, kind string, content []byte) error {
	w, err := m.q.NewMessage()
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := w.Write(content); err != nil {
		return err
	}
	w.Envelope = queue.Envelope{
		Sender:     sender,
		Recipients: []queue.Recipient{{Address: rcpt}},
		Arrival:    m.now(),
	}
	nid, err := w.Commit()
	if err != nil {
		return err
	}
	m.agents.bounce.Info("%s: %s: %s", id, kind, nid)
	m.Wake()
	return nil
}
