package smtpclient

import (
	"encoding/base64"
	"fmt"
	"strings"

	"moat/internal/delivery"
	"moat/internal/sasl"
	"moat/internal/smtp"
)

// Auth is the client's SMTP AUTH (RFC 4954) policy, postconf(5)
// smtp_sasl_*: the agent builds it, the session runs it after EHLO (and
// after STARTTLS with its second EHLO), as Postfix's smtp_sasl_helo_login()
// does.
type Auth struct {
	// Lookup finds the login for a request on a server (host as the MX
	// record or next hop named it): smtp_sasl_password_maps, with the
	// sender first under smtp_sender_dependent_authentication. found
	// false means none, and the session goes on without AUTH; an error is
	// a table failure, which defers the mail.
	Lookup func(req *delivery.Request, host string) (user, pass string, found bool, err error)
	// Filter is smtp_sasl_mechanism_filter: the server's mechanisms it
	// keeps; nil keeps them all.
	Filter func(mech string) bool
	// Plain and TLS are smtp_sasl_security_options and
	// smtp_sasl_tls_security_options, for a session in clear and inside
	// TLS.
	Plain, TLS sasl.SecurityOptions
	// SoftBounce is smtp_sasl_auth_soft_bounce: a 5xx answer to AUTH
	// defers instead of bouncing (the password may be fixed before the
	// mail expires).
	SoftBounce bool
}

// whileAuth is the state named when the connection fails during AUTH.
const whileAuth = "sending AUTH command"

// secured reports whether the session runs inside TLS (STARTTLS
// completed), which chooses between the two sets of security options.
func (w *Conn) secured() bool {
	return w.tc != nil || w.TLSState != nil
}

// auth logs in when the server offers AUTH and the tables have a login
// for this request; false means the session failed (every pending
// recipient has its outcome or is kept for the next server) and the
// connection is to be closed.
func (s *session) auth() bool {
	a := s.d.st.Auth
	offered, ok := s.w.Ext.Keywords["AUTH"]
	if !ok {
		return true
	}
	user, pass, found, err := a.Lookup(s.d.req, s.w.Host)
	if err != nil {
		s.warn("%s: smtp_sasl_password_maps lookup error: %v", s.d.req.QueueID, err)
		s.failRest("4.3.0", "Temporary lookup failure", nil, "")
		s.quit()
		return false
	}
	if !found {
		return true
	}
	var mechs []string
	for _, m := range strings.Fields(offered) {
		if a.Filter == nil || a.Filter(m) {
			mechs = append(mechs, m)
		}
	}
	if len(mechs) == 0 {
		// smtp_sasl_helo_auth(): nothing left after the filter, so no
		// AUTH at all; the server decides whether it relays.
		s.warn("%s: %s offered no supported AUTH mechanisms: '%s'", s.d.req.QueueID, s.w.Namaddr, offered)
		return true
	}
	opts := a.Plain
	if s.w.secured() {
		opts = a.TLS
	}
	mech := sasl.ChooseClientMech(mechs, opts)
	if mech == "" {
		// Cyrus's "no worthy mechs": the credentials stay here.
		s.warn("SASL authentication failure: No worthy mechs found")
		s.failRest("4.7.0", fmt.Sprintf("SASL authentication failed; cannot authenticate to server %s: no mechanism available", s.w.Namaddr), nil, "")
		s.quit()
		return false
	}
	c, err := sasl.NewClient(mech, user, pass)
	if err != nil {
		s.warn("%s: %v", s.d.req.QueueID, err)
		s.failRest("4.7.0", fmt.Sprintf("SASL authentication failed; cannot authenticate to server %s: %v", s.w.Namaddr, err), nil, "")
		s.quit()
		return false
	}
	cmd := "AUTH " + mech
	if ir := c.Initial(); ir != nil {
		cmd += " " + encode64(ir)
	}
	rep, ok := s.authLine(cmd)
	// Each 3xx is a challenge (smtp_sasl_authenticate()); a server that
	// never ends the exchange is cut off after 100 steps as there.
	for steps := 0; ok && rep.Code/100 == 3; steps++ {
		if steps >= 100 {
			s.failRest("4.3.0", fmt.Sprintf("SASL authentication failed; authentication protocol loop with server %s", s.w.Namaddr), nil, "")
			s.quit()
			return false
		}
		ch, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rep.Text()))
		var resp []byte
		if err == nil {
			resp, err = c.Next(ch)
		}
		if err != nil {
			// Postfix's client gives up on a challenge its SASL library
			// cannot answer, without a cancel, and defers.
			s.failRest("4.7.0", fmt.Sprintf("SASL authentication failed; cannot authenticate to server %s: %v", s.w.Namaddr, err), nil, "")
			s.quit()
			return false
		}
		rep, ok = s.authLine(encode64(resp))
	}
	if !ok {
		return false
	}
	if rep.Code/100 == 2 {
		return true
	}
	dsn := rep.DSN()
	if rep.Code/100 != 4 && rep.Code/100 != 5 {
		dsn = "5.5.0"
	}
	if rep.Code/100 == 5 && a.SoftBounce {
		dsn = "4" + dsn[1:]
	}
	s.failRest(dsn, fmt.Sprintf("SASL authentication failed; server %s said: %s", s.w.Namaddr, rep.LogText()), &rep, "AUTH command")
	s.quit()
	return false
}

// authLine sends one line of the AUTH exchange and reads the reply;
// false means an I/O error, already handled.
func (s *session) authLine(line string) (smtp.Reply, bool) {
	t := s.d.st.Helo
	s.w.send(line, t)
	if err := s.w.flush(t); err != nil {
		s.ioFail(err, whileAuth)
		return smtp.Reply{}, false
	}
	rep, err := s.w.read(t)
	if err != nil {
		s.ioFail(err, whileAuth)
		return smtp.Reply{}, false
	}
	return rep, true
}

// warn logs a warning when there is a log.
func (s *session) warn(format string, args ...any) {
	if s.d.st.Log != nil {
		s.d.st.Log.Warning(format, args...)
	}
}

// encode64 is an AUTH response on the wire; RFC 4954 section 4 sends an
// empty one as "=".
func encode64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}
