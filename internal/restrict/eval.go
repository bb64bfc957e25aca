package restrict

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"moat/internal/dns"
	"moat/internal/maillog"
	"moat/internal/smtp"
	"moat/internal/smtpd"
)

// status is what a restriction says (smtpd_check.c SMTPD_CHECK_DUNNO,
// _OK, _REJECT).
type status int

const (
	dunno status = iota
	permitted
	rejected
)

// The reply classes smtpd_check.c names in its replies.
const (
	classClient    = "Client host"
	classHelo      = "Helo command"
	classSender    = "Sender address"
	classRecipient = "Recipient address"
	classEtrn      = "Etrn command"
	classData      = "Data command"
	classEOD       = "End-of-data"
	classCCert     = "Client certificate"
	classSASL      = "SASL login name"
)

// pending is a remembered deferral (smtpd_check.c SMTPD_DEFER): the first
// reason wins.
type pending struct {
	active   bool
	software bool
	code     int
	dsn      string
	text     string
}

// eval is one evaluation's state, Postfix's SMTPD_STATE fields that
// generic_checks() updates.
type eval struct {
	s   *Session
	l   *Lists
	ds  *dns.Session
	ctx context.Context
	v   *smtpd.View
	d   *smtpd.Decision

	where        string // the command, as logged ("RCPT")
	reply        smtp.Reply
	recursion    int
	warnIfReject int
	dip, dir     pending // defer_if_permit, defer_if_reject
	discard      bool

	// what the stage under evaluation sees: the HELO name, sender and
	// recipient may be absent.
	helo, sender, recipient, etrn *string

	senderChecked, rcptChecked bool
}

func strp(s string) *string { return &s }

// reset is SMTPD_CHECK_RESET().
func (e *eval) reset() {
	e.recursion = 0
	e.warnIfReject = 0
	e.dir.active = false
}

// envelope is what log_whatsup() appends.
func (e *eval) envelope() maillog.Envelope {
	env := maillog.Envelope{Proto: e.v.Protocol}
	if env.Proto == "" {
		env.Proto = "SMTP"
	}
	if e.sender != nil {
		env.Sender, env.HasSender = *e.sender, true
	}
	if e.recipient != nil {
		env.Recipient, env.HasRecipient = *e.recipient, true
	}
	if e.helo != nil {
		env.Helo = *e.helo
	}
	return env
}

func (e *eval) client() maillog.Client {
	return maillog.Client{Name: e.v.ClientName, Addr: e.v.ClientAddr, Port: e.v.ClientPort}
}

// whatsup logs an access-decision record (log_whatsup()).
func (e *eval) whatsup(action, text string) {
	e.l.info("%s", maillog.Whatsup(e.v.QueueID, action, e.where, e.client(), text, e.envelope()))
}

func (e *eval) clientName() string {
	if e.v.ClientName == "" {
		return "unknown"
	}
	return e.v.ClientName
}

func (e *eval) namaddr() string {
	return e.clientName() + "[" + maillog.AddrString(e.v.ClientAddr) + "]"
}

// reject is smtpd_check_reject(): it applies warn_if_reject,
// defer_if_reject and soft_bounce, validates the code, and keeps the
// reply. software marks configuration errors (MAIL_ERROR_SOFTWARE), which
// warn_if_reject cannot turn into warnings.
func (e *eval) reject(software bool, code int, dsn, format string, args ...any) status {
	text := fmt.Sprintf(format, args...)
	warnOnly := e.warnIfReject > 0 && !software
	if code < 400 || code > 599 {
		e.l.warn("SMTP reply code configuration error: %d %s %s", code, dsn, text)
		code, dsn, text = 450, "4.7.1", "Service unavailable"
	} else if !validDSN(dsn) {
		e.l.warn("DSN detail code configuration error: %d %s %s", code, dsn, text)
		code, dsn, text = 450, "4.7.1", "Service unavailable"
	}
	// RFC 5321 line length: Postfix truncates the whole reply to 510.
	if n := 510 - len(dsn) - 5; len(text) > n && n > 0 {
		text = text[:n]
	}
	text = printable(text)
	if !warnOnly && e.dir.active && code/100 == 5 {
		e.warnIfReject = 0
		e.dir.active = false
		return e.reject(e.dir.software, e.dir.code, e.dir.dsn, "%s", e.dir.text)
	}
	if e.l.p.softBounce && code/100 == 5 {
		code -= 100
	}
	dsn = fmt.Sprintf("%d%s", code/100, dsn[1:])
	r := smtp.NewReply(code, dsn, text)
	if warnOnly {
		e.whatsup("reject_warning", r.String())
		return dunno
	}
	e.reply = r
	return rejected
}

// configError is Postfix's longjmp with "451 4.3.5 Server configuration
// error", after the warnings that say why.
func (e *eval) configError() status {
	return e.reject(true, 451, "4.3.5", "Server configuration error")
}

// serverError is the 3.7 reply for an access table that failed: the
// error names what was being checked.
func (e *eval) tableError(replyName, replyClass string) status {
	return e.reject(true, 451, "4.3.5", "<%s>: %s rejected: Server configuration error", replyName, replyClass)
}

// dictRetry is reject_dict_retry(): a table the decision depends on could
// not be read.
func (e *eval) dictRetry(name string) status {
	return e.reject(false, 451, "4.3.0", "<%s>: Temporary lookup failure", name)
}

// deferIf records a deferral (defer_if()).
func deferIf(p *pending, software bool, code int, dsn, format string, args ...any) {
	if p.active {
		return
	}
	*p = pending{active: true, software: software, code: code, dsn: dsn, text: fmt.Sprintf(format, args...)}
}

// deferIfPermit is DEFER_IF_PERMIT: with warn_if_reject in force the
// deferral is logged as a warning instead.
func (e *eval) deferIfPermit(code int, dsn, format string, args ...any) {
	if e.warnIfReject == 0 {
		deferIf(&e.dip, false, code, dsn, format, args...)
		return
	}
	e.reject(false, code, dsn, format, args...)
}

func (e *eval) deferIfReject(code int, dsn, format string, args ...any) {
	deferIf(&e.dir, false, code, dsn, format, args...)
}

// applyDeferIfPermit turns a permit into the remembered deferral.
func (e *eval) applyDeferIfPermit(st status) status {
	if st != rejected && e.dip.active {
		return e.reject(e.dip.software, e.dip.code, e.dip.dsn, "%s", e.dip.text)
	}
	return st
}

// stage drivers: smtpd_check_client() ... smtpd_check_eod().

func (e *eval) runClient() status {
	e.dip.active = false
	e.reset()
	st := e.generic(e.l.lists[smtpd.StageConnect], e.namaddr(), classClient, "check_client_access")
	e.s.dipClient = e.dip.active
	e.s.dip = e.dip
	return st
}

func (e *eval) runHelo() status {
	if e.helo == nil {
		return dunno
	}
	e.restoreDIP(e.s.dipClient)
	e.reset()
	st := e.generic(e.l.lists[smtpd.StageHelo], *e.helo, classHelo, "check_helo_access")
	e.s.dipHelo = e.dip.active
	e.s.dip = e.dip
	return st
}

func (e *eval) runMail() status {
	if e.sender == nil {
		return dunno
	}
	e.restoreDIP(e.s.dipClient || e.s.dipHelo)
	e.senderChecked = false
	e.reset()
	st := e.generic(e.l.lists[smtpd.StageMail], *e.sender, classSender, "check_sender_access")
	e.s.dipSender = e.dip.active
	e.s.dip = e.dip
	if e.s.Standalone && e.l.p.rejectUnlistedSender && st != rejected && !e.senderChecked && !e.discard && *e.sender != "" {
		st = e.senderRcptMaps(*e.sender)
	}
	return st
}

// restoreDIP sets the defer_if_permit flag to what earlier stages left,
// keeping the reason they recorded.
func (e *eval) restoreDIP(active bool) {
	e.dip = e.s.dip
	e.dip.active = active
}

func (e *eval) runRcpt() status {
	rcpt := *e.recipient
	if strings.EqualFold(rcpt, "postmaster") {
		return dunno
	}
	e.rcptChecked = false
	if e.l.p.delayReject {
		if st := e.runClient(); st == rejected {
			return st
		}
		if st := e.runHelo(); st == rejected {
			return st
		}
		if st := e.runMail(); st == rejected {
			return st
		}
	}
	e.restoreDIP(e.s.dipSender)
	e.reset()
	var st status
	for _, list := range e.l.rcptOrder() {
		st = e.generic(list, rcpt, classRecipient, "check_recipient_access")
		if st == rejected {
			break
		}
	}
	st = e.applyDeferIfPermit(st)
	if e.s.Standalone && e.l.p.rejectUnlistedRecipient && st != rejected && !e.rcptChecked && !e.discard {
		st = e.rcptRcptMaps(rcpt)
	}
	return st
}

// rcptOrder is smtpd_relay_before_recipient_restrictions.
func (l *Lists) rcptOrder() [][]string {
	if b, err := l.p.cfg.Bool("smtpd_relay_before_recipient_restrictions"); err == nil && !b {
		return [][]string{l.lists[smtpd.StageRcpt], l.lists[stageRelay]}
	}
	return [][]string{l.lists[stageRelay], l.lists[smtpd.StageRcpt]}
}

func (e *eval) runEtrn() status {
	if e.etrn == nil {
		return dunno
	}
	if e.l.p.delayReject {
		if st := e.runClient(); st == rejected {
			return st
		}
		if st := e.runHelo(); st == rejected {
			return st
		}
	}
	e.restoreDIP(e.s.dipClient || e.s.dipHelo)
	e.reset()
	st := e.generic(e.l.lists[smtpd.StageEtrn], *e.etrn, classEtrn, "check_etrn_access")
	return e.applyDeferIfPermit(st)
}

func (e *eval) runData(stage smtpd.Stage) status {
	e.dip.active = false
	e.reset()
	name, class := "DATA", classData
	if stage == smtpd.StageEndOfData {
		name, class = "END-OF-DATA", classEOD
	}
	st := e.generic(e.l.lists[stage], name, class, "")
	return e.applyDeferIfPermit(st)
}

// generic is generic_checks(): the restrictions in order until one
// decides, a discard, or both deferral flags are up.
func (e *eval) generic(list []string, replyName, replyClass, defACL string) status {
	saved := e.recursion
	e.recursion++
	defer func() { e.recursion = saved }()
	var st status
	for i := 0; i < len(list); i++ {
		if e.discard {
			break
		}
		name := list[i]
		lower := strings.ToLower(name)
		if lower == "warn_if_reject" {
			if e.warnIfReject == 0 {
				e.warnIfReject = e.recursion
			}
			continue
		}
		var arg string
		if strings.Contains(name, ":") {
			if defACL == "" {
				e.l.warn("specify one of (check_client_access, check_helo_access, check_sender_access, check_recipient_access, check_etrn_access) before %s restriction \"%s\"", replyClass, name)
				return e.configError()
			}
			lower, arg = defACL, name
		} else if kind, ok := argKinds[lower]; ok {
			if i+1 >= len(list) || (kind == argMap && !strings.Contains(list[i+1], ":")) {
				st = e.missingArg(lower, kind, list, i)
				if st != dunno {
					return st
				}
				continue
			}
			i++
			arg = list[i]
		}
		st = e.one(lower, name, arg, list[i+1:], replyName, replyClass, defACL)
		if e.warnIfReject >= e.recursion {
			e.warnIfReject = 0
		}
		if st != dunno {
			break
		}
		if e.dip.active && e.dir.active {
			break
		}
	}
	return st
}

// missingArg answers a restriction without its argument as Postfix does
// at run time (New refuses these in main.cf; access tables can still
// return them).
func (e *eval) missingArg(name string, kind argKind, list []string, i int) status {
	switch kind {
	case argMap:
		bad := ""
		if i+1 < len(list) {
			bad = list[i+1]
		}
		e.l.warn("restriction %s: bad argument \"%s\": need maptype:mapname", name, bad)
		return e.configError()
	case argPolicy:
		e.l.warn("restriction %s must be followed by transport:server", name)
		return e.configError()
	case argNumber:
		e.l.warn("restriction %s must be followed by number", name)
		return e.configError()
	}
	e.l.warn("restriction %s requires domain name argument", name)
	return dunno
}

// ignoredAfter warns about restrictions after a final one.
func (e *eval) ignoredAfter(rest []string, name string) {
	if len(rest) > 0 && e.warnIfReject == 0 {
		e.l.warn("restriction `%s' after `%s' is ignored", rest[0], name)
	}
}

// validDSN reports an RFC 3463 status "d.ddd.ddd" whose class is 2, 4 or 5.
func validDSN(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.ContainsAny(parts[0], "245") {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// splitDSN is dsn_split(): text may begin with an RFC 3463 status, which
// then replaces def.
func splitDSN(def, text string) (dsn, rest string) {
	tok, after, _ := strings.Cut(text, " ")
	if validDSN(tok) && (tok[0] == '4' || tok[0] == '5') {
		return tok, strings.TrimLeft(after, " \t")
	}
	return def, text
}

// dsnFix is smtpd_dsn_fix(): an address status code is made to fit what
// is being rejected.
func dsnFix(dsn, replyClass string) string {
	if len(dsn) < 5 || dsn[1:4] != ".1." {
		return dsn
	}
	micro := dsn[4:]
	sender := map[string]string{"1": "4.1.0", "2": "4.1.8", "3": "4.1.7", "4": "4.1.0", "5": "4.1.0", "6": "4.1.0", "7": "4.1.7", "8": "4.1.8"}
	rcpt := map[string]string{"1": "4.1.1", "2": "4.1.2", "3": "4.1.3", "4": "4.1.4", "5": "4.1.5", "6": "4.1.6", "7": "4.1.3", "8": "4.1.2"}
	var out string
	switch replyClass {
	case classSender:
		if out = sender[micro]; out == "" {
			out = "4.1.0"
		}
	case classRecipient:
		if out = rcpt[micro]; out == "" {
			out = "4.1.0"
		}
	default:
		out = "4.0.0"
	}
	return dsn[:1] + out[1:]
}

// printable is Postfix's printable(text, ' ') on a reply: control bytes
// and invalid UTF-8 become spaces, so a TXT record or table text cannot
// break the reply; valid UTF-8 (smtputf8_enable) stays.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1, r < 0x20, r >= 0x7f && r <= 0x9f:
			b.WriteByte(' ')
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
