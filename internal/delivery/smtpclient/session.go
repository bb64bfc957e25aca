package smtpclient

import (
	"context"
	"fmt"
	"net"
	"strings"

	"moat/internal/delivery"
	"moat/internal/queue"
	"moat/internal/smtp"
)

// Outcome is one recipient's result with what an RFC 3464 delivery
// status notification needs beyond the log: the Remote-MTA (the server's
// name, "" when moat decided) and the server's reply for the
// Diagnostic-Code ("smtp; 550 5.1.1 ..."), with the command it answered.
type Outcome struct {
	delivery.Result
	RemoteMTA string
	Reply     string
	Command   string
}

// Delivery is one delivery request on its way through one or more
// servers. Postfix's smtp(8) tries the next MX host with the recipients a
// server deferred (smtp_trouble.c: a soft error at a server that is not
// the final one "keeps" the recipient), so the outcome of each recipient
// is fixed only by a hard error, a success, or the final server.
type Delivery struct {
	ctx context.Context
	st  *Settings
	req *delivery.Request
	out map[int]Outcome
	// Nexthop names the destination in the mail loop text.
	Nexthop string
	// BestMX says the servers being tried are the most preferred MX
	// hosts, which makes a mail loop permanent (5.4.6) rather than
	// temporary (4.4.6) as in smtp_proto.c.
	BestMX bool
}

// NewDelivery starts req with no recipient decided.
func NewDelivery(ctx context.Context, st *Settings, req *delivery.Request) *Delivery {
	return &Delivery{ctx: ctx, st: st, req: req, out: make(map[int]Outcome, len(req.Recipients)), Nexthop: req.Nexthop}
}

// Pending are the recipients without an outcome yet.
func (d *Delivery) Pending() []delivery.Recipient {
	var p []delivery.Recipient
	for _, r := range d.req.Recipients {
		if _, ok := d.out[r.Index]; !ok {
			p = append(p, r)
		}
	}
	return p
}

// Done reports whether every recipient has its outcome.
func (d *Delivery) Done() bool { return len(d.out) >= len(d.req.Recipients) }

// Fail gives every pending recipient the same outcome, decided without a
// server's reply (a DNS failure, no server reachable): relay is "none"
// as Postfix logs it then.
func (d *Delivery) Fail(dsn, reason, relay string) {
	now := d.st.Now()
	for _, r := range d.Pending() {
		d.out[r.Index] = Outcome{Result: delivery.Result{Index: r.Index, State: StateOf(dsn), DSN: dsn,
			Reason: reason, Relay: relay, Done: now}}
	}
}

// Outcomes returns one outcome per recipient, in request order; a
// recipient left undecided (which no path should leave) is deferred.
func (d *Delivery) Outcomes() []Outcome {
	out := make([]Outcome, 0, len(d.req.Recipients))
	for _, r := range d.req.Recipients {
		o, ok := d.out[r.Index]
		if !ok {
			o = Outcome{Result: delivery.Result{Index: r.Index, State: queue.RcptDeferred, DSN: "4.3.0",
				Reason: "delivery interrupted", Relay: "none", Done: d.st.Now()}}
		}
		out = append(out, o)
	}
	return out
}

// Results is Outcomes reduced to what the queue manager records.
func (d *Delivery) Results() []delivery.Result {
	oc := d.Outcomes()
	out := make([]delivery.Result, len(oc))
	for i, o := range oc {
		out[i] = o.Result
		if o.Reply != "" { // the DSN's Remote-MTA and Diagnostic-Code
			out[i].RemoteMTA, out[i].Diagnostic = o.RemoteMTA, "smtp; "+o.Reply
		}
	}
	return out
}

// StateOf maps a DSN class to the recipient state: 2.x.x delivered,
// 5.x.x bounces, anything else waits for a retry (RFC 3463 section 3.1).
func StateOf(dsn string) queue.RcptState {
	switch {
	case len(dsn) > 0 && dsn[0] == '2':
		return queue.RcptDelivered
	case len(dsn) > 0 && dsn[0] == '5':
		return queue.RcptBounced
	default:
		return queue.RcptDeferred
	}
}

// Session runs the pending recipients through one server: the greeting
// and EHLO/LHLO unless w came from the cache, then one mail transaction.
// final says this is the last server the request will see, so soft
// failures are final; on another server they leave the recipient
// pending for the next. It reports whether w is clean (no transaction
// open, every reply read) and may be reused; otherwise w is closed.
func (d *Delivery) Session(w *Conn, final bool) (clean bool) {
	s := &session{d: d, w: w, final: final}
	stop := context.AfterFunc(d.ctx, func() { w.c.Close() })
	if !w.helloDone {
		if !s.handshake() {
			stop()
			w.c.Close()
			return false
		}
		w.helloDone = true
	}
	w.Uses++
	clean = s.mailTransaction()
	if !stop() {
		clean = false
	}
	if !clean {
		w.c.Close()
	}
	return clean
}

// Probe checks that a cached connection still works, as Postfix's "RSET
// probe" does before it reuses one (smtp_rset_timeout); a connection
// that fails it is closed, without any error for the mail.
func (d *Delivery) Probe(w *Conn) bool {
	stop := context.AfterFunc(d.ctx, func() { w.c.Close() })
	defer stop()
	t := d.st.RSET
	w.send("RSET", t)
	if err := w.flush(t); err != nil {
		w.c.Close()
		return false
	}
	rep, err := w.read(t)
	if err != nil || rep.Code/100 != 2 {
		w.c.Close()
		return false
	}
	return true
}

// Quit ends a clean connection the caller will not cache.
func (d *Delivery) Quit(w *Conn) {
	w.QuitAndClose(d.st.Quit)
}

// session is one server's part of a Delivery.
type session struct {
	d     *Delivery
	w     *Conn
	final bool
}

// info logs why a server is skipped for now, as smtp_trouble.c's
// msg_info does.
func (s *session) info(reason string) {
	if s.d.st.Log != nil {
		s.d.st.Log.Info("%s: %s", s.d.req.QueueID, reason)
	}
}

// set records a recipient's outcome unless it has one, or keeps the
// recipient for the next server after a soft failure at a server that
// is not the final one (smtp_rcpt_fail).
func (s *session) set(r delivery.Recipient, dsn, reason string, rep *smtp.Reply, command string) {
	if _, ok := s.d.out[r.Index]; ok {
		return
	}
	if dsn[0] == '4' && !s.final {
		s.info(reason)
		return
	}
	o := Outcome{Result: delivery.Result{Index: r.Index, State: StateOf(dsn), DSN: dsn,
		Reason: reason, Relay: s.w.Relay, Done: s.d.st.Now()}}
	if rep != nil {
		o.RemoteMTA, o.Reply, o.Command = s.w.Host, rep.LogText(), command
	}
	s.d.out[r.Index] = o
}

// failRest gives every pending recipient the same outcome, or keeps them
// all after a soft failure at a server that is not the final one
// (smtp_bulk_fail).
func (s *session) failRest(dsn, reason string, rep *smtp.Reply, command string) {
	if dsn[0] == '4' && !s.final {
		s.info(reason)
		return
	}
	for _, r := range s.d.Pending() {
		s.set(r, dsn, reason, rep, command)
	}
}

// failSession is failRest for a failure of the session itself, not a
// reply to a recipient or the message: the greeting or EHLO/LHLO refused,
// the connection lost or timed out (Postfix's smtp_site_fail and
// smtp_sess_fail, which throttle the destination, against smtp_rcpt_fail
// and smtp_mesg_fail, which do not). The deferrals it decides carry
// SiteFailure, the queue manager's negative feedback for the destination.
func (s *session) failSession(dsn, reason string, rep *smtp.Reply) {
	pending := s.d.Pending()
	s.failRest(dsn, reason, rep, "")
	for _, r := range pending {
		if o, ok := s.d.out[r.Index]; ok && o.State == queue.RcptDeferred {
			o.SiteFailure = true
			s.d.out[r.Index] = o
		}
	}
}

// said is Postfix's "host H[A] said: REPLY (in reply to COMMAND)" with
// its DSN; a reply that is neither 4xx nor 5xx where a failure is judged
// is a protocol error (vsmtp_fill_dsn).
func (s *session) said(rep smtp.Reply, command string) (dsn, reason string) {
	reason = fmt.Sprintf("host %s said: %s (in reply to %s)", s.w.Namaddr, rep.LogText(), command)
	if c := rep.Code / 100; c != 4 && c != 5 {
		return "5.5.0", "Protocol error: " + reason
	}
	return rep.DSN(), reason
}

// refuse fails the pending recipients with a server's reply.
func (s *session) refuse(rep smtp.Reply, command string) {
	dsn, reason := s.said(rep, command)
	s.failRest(dsn, reason, &rep, command)
}

// ioFail fails or keeps every pending recipient after an I/O error, with
// smtp_stream_except()'s texts.
func (s *session) ioFail(err error, where string) {
	var ne net.Error
	switch {
	case isTimeout(err, &ne):
		s.failSession("4.4.2", fmt.Sprintf("conversation with %s timed out while %s", s.w.Namaddr, where), nil)
	case isBadReply(err):
		// Postfix would read on; a server that breaks reply syntax is
		// out of sync, so moat ends the session and retries later.
		s.failSession("4.5.0", fmt.Sprintf("malformed reply from %s while %s", s.w.Namaddr, where), nil)
	default:
		s.failSession("4.4.2", fmt.Sprintf("lost connection with %s while %s", s.w.Namaddr, where), nil)
	}
}

// The states of smtp_proto.c's xfer_states[] and xfer_request[]: the
// first names what was going on when the connection failed, the second
// which command a reply answers.
const (
	whileGreeting = "receiving the initial server greeting"
	whileEHLO     = "performing the EHLO handshake"
	whileHELO     = "performing the HELO handshake"
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

// handshake reads the greeting and sends EHLO (HELO when EHLO is
// refused) or LHLO; on failure every pending recipient has its outcome
// or is kept, and the connection is to be closed.
func (s *session) handshake() bool {
	st := s.d.st
	greet, err := s.w.read(st.Helo)
	if err != nil {
		s.ioFail(err, whileGreeting)
		return false
	}
	if greet.Code/100 != 2 {
		dsn := greet.DSN()
		if greet.Code/100 == 5 && st.SkipGreeting5xx {
			// smtp_skip_5xx_greeting: try the next MX host, and if
			// none is left, defer rather than bounce.
			dsn = "4" + dsn[1:]
		}
		s.failSession(dsn, fmt.Sprintf("host %s refused to talk to me: %s", s.w.Namaddr, greet.LogText()), &greet)
		return false
	}
	verb, while := "EHLO", whileEHLO
	if st.LMTP {
		verb, while = "LHLO", whileLHLO
	}
	rep, ok := s.hello(verb, while)
	if !ok {
		return false
	}
	if rep.Code/100 != 2 && !st.LMTP && rep.Code != 421 {
		// A server without ESMTP: HELO, and none of the extensions.
		if rep, ok = s.hello("HELO", whileHELO); !ok {
			return false
		}
		if rep.Code/100 == 2 {
			rep.Lines = rep.Lines[:1]
		}
	}
	if rep.Code/100 != 2 {
		s.failSession(rep.DSN(), fmt.Sprintf("host %s refused to talk to me: %s", s.w.Namaddr, rep.LogText()), &rep)
		s.quit()
		return false
	}
	s.w.Ext = smtp.ParseEHLO(rep)
	if !st.LMTP && st.MyHostname != "" && strings.EqualFold(s.w.Ext.Name, st.MyHostname) {
		// The server is this host: the mail would loop (smtp_proto.c).
		if st.Log != nil {
			st.Log.Warning("host %s replied to HELO/EHLO with my own hostname %s", s.w.Relay, st.MyHostname)
		}
		dsn := "4.4.6"
		if s.d.BestMX {
			dsn = "5.4.6"
		}
		s.failRest(dsn, "mail for "+s.d.Nexthop+" loops back to myself", nil, "")
		s.quit()
		return false
	}
	// STARTTLS before AUTH: credentials go over the encrypted channel.
	if !s.startTLS() {
		return false
	}
	// AUTH after the EHLO that followed STARTTLS (RFC 4954 section 4),
	// so its mechanisms and security options are the encrypted ones.
	if s.d.st.Auth != nil && !s.auth() {
		return false
	}
	return true
}

// hello sends one EHLO, HELO or LHLO and reads its reply; false means
// an I/O error, already handled.
func (s *session) hello(verb, while string) (smtp.Reply, bool) {
	t := s.d.st.Helo
	s.w.send(verb+" "+s.d.st.HeloName, t)
	if err := s.w.flush(t); err != nil {
		s.ioFail(err, while)
		return smtp.Reply{}, false
	}
	rep, err := s.w.read(t)
	if err != nil {
		s.ioFail(err, while)
		return smtp.Reply{}, false
	}
	return rep, true
}

// quit ends the session politely; its failure changes no outcome.
func (s *session) quit() {
	t := s.d.st.Quit
	s.w.send("QUIT", t)
	if s.w.flush(t) == nil {
		s.w.read(t)
	}
}
