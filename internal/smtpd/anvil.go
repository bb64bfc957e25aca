package smtpd

import (
	"moat/internal/anvil"
	"moat/internal/maps"
	"moat/internal/matchlist"
	"moat/internal/smtp"
)

// anvilLimits are the smtpd_client_*_limit parameters (postconf(5)); zero
// means no limit, as in Postfix.
type anvilLimits struct {
	connCount, connRate, mailRate, rcptRate, tlsRate, authRate int
	// exceptions is smtpd_client_event_limit_exceptions (default
	// $mynetworks): clients never counted nor limited.
	exceptions *matchlist.List
}

// any reports whether some limit is set; Postfix's smtpd talks to anvil
// only then.
func (l *anvilLimits) any() bool {
	return l.connCount > 0 || l.connRate > 0 || l.mailRate > 0 || l.rcptRate > 0 ||
		l.tlsRate > 0 || l.authRate > 0
}

// readAnvilLimits reads the limits once per service generation, so a bad
// value or exception list stops the service at start, not mid-session.
func (s *Server) readAnvilLimits(mo maps.Options) error {
	c := s.d.Config
	l := &s.set.anvil
	for _, p := range []struct {
		name string
		v    *int
	}{
		{"smtpd_client_connection_count_limit", &l.connCount},
		{"smtpd_client_connection_rate_limit", &l.connRate},
		{"smtpd_client_message_rate_limit", &l.mailRate},
		{"smtpd_client_recipient_rate_limit", &l.rcptRate},
		{"smtpd_client_new_tls_session_rate_limit", &l.tlsRate},
		{"smtpd_client_auth_rate_limit", &l.authRate},
	} {
		n, err := c.Int(p.name)
		if err != nil {
			return err
		}
		*p.v = int(max(n, 0))
	}
	var err error
	l.exceptions, err = matchlist.New(c, "smtpd_client_event_limit_exceptions", matchlist.Host, mo)
	return err
}

// anvilOn decides once per session whether this client is counted: the
// service has an anvil, some limit is set, and the client is not in
// smtpd_client_event_limit_exceptions (a table failure counts it, so the
// limits fail closed on the exception list and open only on anvil itself).
func (s *session) anvilOn() bool {
	if s.srv.d.Anvil == nil || !s.set.anvil.any() || !s.client.Addr.IsValid() {
		return false
	}
	return !s.listMatch(s.set.anvil.exceptions)
}

func (s *session) anvilKey() (string, string) {
	return s.srv.d.Service, s.client.Addr.String()
}

// anvilWarn logs a failed anvil request; the session goes on without the
// limit, as Postfix's smtpd does when anvil is unreachable.
func (s *session) anvilWarn(err error) {
	s.log.Warning("%s: anvil: %v; continuing without client limits", s.client, err)
}

// anvilConnect counts the connection and reports whether the session may
// go on; if not, the 421 has been sent and the warning logged, with
// Postfix's texts (smtpd(8)).
func (s *session) anvilConnect() bool {
	if !s.anvil {
		return true
	}
	svc, addr := s.anvilKey()
	count, rate, err := s.srv.d.Anvil.Connect(svc, addr)
	if err != nil {
		s.anvil = false
		s.anvilWarn(err)
		return true
	}
	l := &s.set.anvil
	switch {
	case l.connCount > 0 && count > l.connCount:
		s.log.Warning("Connection concurrency limit exceeded: %d from %s for service %s", count, s.client, svc)
	case l.connRate > 0 && rate > l.connRate:
		s.log.Warning("Connection rate limit exceeded: %d from %s for service %s", rate, s.client, svc)
	default:
		return true
	}
	s.write(smtp.NewReply(421, "4.7.0", s.set.myhostname+" Error: too many connections from "+addr))
	return false
}

// anvilDisconnect undoes anvilConnect's count at the end of the session.
func (s *session) anvilDisconnect() {
	if !s.anvil {
		return
	}
	svc, addr := s.anvilKey()
	if err := s.srv.d.Anvil.Disconnect(svc, addr); err != nil {
		s.anvilWarn(err)
	}
}

// anvilRate counts one MAIL, RCPT or AUTH and reports
// whether it is within limit; over it, the caller's reply goes out (and
// counts as an error) and Postfix's warning is logged.
func (s *session) anvilRate(limit int, ev anvil.Event, what string, r smtp.Reply) bool {
	if !s.anvil || limit <= 0 {
		return true
	}
	svc, addr := s.anvilKey()
	var rate int
	var err error
	switch a := s.srv.d.Anvil; ev {
	case anvil.EvMail:
		rate, err = a.Mail(svc, addr)
	case anvil.EvRcpt:
		rate, err = a.Rcpt(svc, addr)
	case anvil.EvAuth:
		rate, err = a.Auth(svc, addr)
	default:
		return true
	}
	if err != nil {
		s.anvilWarn(err)
		return true
	}
	if rate <= limit {
		return true
	}
	s.reply(r)
	s.log.Warning("%s rate limit exceeded: %d from %s for service %s", what, rate, s.client, svc)
	return false
}

// anvilMail is smtpd_client_message_rate_limit, checked at MAIL FROM: a
// "message" is a delivery request, whether or not it is completed.
func (s *session) anvilMail() bool {
	_, addr := s.anvilKey()
	return s.anvilRate(s.set.anvil.mailRate, anvil.EvMail, "Message delivery request",
		smtp.NewReply(450, "4.7.1", "Error: too much mail from "+addr))
}

// anvilRcpt is smtpd_client_recipient_rate_limit, checked at RCPT TO.
func (s *session) anvilRcpt() bool {
	_, addr := s.anvilKey()
	return s.anvilRate(s.set.anvil.rcptRate, anvil.EvRcpt, "Recipient address",
		smtp.NewReply(450, "4.7.1", "Error: too many recipients from "+addr))
}

// anvilAuth is smtpd_client_auth_rate_limit, for issue 7's AUTH command.
func (s *session) anvilAuth() bool {
	_, addr := s.anvilKey()
	return s.anvilRate(s.set.anvil.authRate, anvil.EvAuth, "AUTH command",
		smtp.NewReply(450, "4.7.1", "Error: too many AUTH commands from "+addr))
}

// anvilTLSAllowed is smtpd_client_new_tls_session_rate_limit before a TLS
// handshake (issue 7's STARTTLS, and wrapper-mode TLS at connect): it asks
// the rate without counting, and over the limit refuses with Postfix's 454
// (the session goes on in plain text) or, at connect, 421 (the session
// ends).
func (s *session) anvilTLSAllowed(atConnect bool) bool {
	if !s.anvil || s.set.anvil.tlsRate <= 0 {
		return true
	}
	svc, addr := s.anvilKey()
	rate, err := s.srv.d.Anvil.NewTLSStatus(svc, addr)
	if s.tlsRateWithin(rate, err, svc) {
		return true
	}
	if atConnect {
		s.write(smtp.NewReply(421, "4.7.0", s.set.myhostname+" Error: too many new TLS sessions from "+addr))
	} else {
		s.reply(smtp.NewReply(454, "4.7.0", "Error: too many new TLS sessions from "+addr))
	}
	return false
}

// anvilTLSCount counts a handshake that made a new TLS session (a resumed
// one is not counted) and reports whether the rate is within the limit;
// over it, the warning is logged and the caller hangs up without a reply,
// as Postfix's smtpd does once TLS is up.
func (s *session) anvilTLSCount() bool {
	if !s.anvil || s.set.anvil.tlsRate <= 0 {
		return true
	}
	svc, addr := s.anvilKey()
	rate, err := s.srv.d.Anvil.NewTLS(svc, addr)
	return s.tlsRateWithin(rate, err, svc)
}

// tlsRateWithin judges a new-TLS-session rate anvil reported: within the
// limit, or unknown (anvil unreachable: fail open, as Postfix does), is
// true; over it, the warning is logged.
func (s *session) tlsRateWithin(rate int, err error, svc string) bool {
	if err != nil {
		s.anvilWarn(err)
		return true
	}
	if rate <= s.set.anvil.tlsRate {
		return true
	}
	s.log.Warning("New TLS session rate limit exceeded: %d from %s for service %s", rate, s.client, svc)
	return false
}
