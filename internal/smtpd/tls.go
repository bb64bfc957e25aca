package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"time"

	"moat/internal/cleanup"
	"moat/internal/maillog"
	"moat/internal/smtp"
	"moat/internal/tlsconf"
)

// tlsState is the session's TLS layer once STARTTLS (RFC 3207) or the smtps
// wrapper mode has completed the handshake; nil in plaintext.
type tlsState struct {
	conn *tls.Conn
	info *tlsconf.Session
}

// tlsActive reports whether the session is encrypted: AUTH's
// smtpd_tls_auth_only and smtpd_sasl_tls_security_options depend on it.
func (s *session) tlsActive() bool { return s.tls != nil }

// ioConn is what commands are read from and replies written to: the TLS
// connection once there is one. Deadlines and interrupt still act on the raw
// connection underneath, which the TLS layer reads through.
func (s *session) ioConn() net.Conn {
	if s.tls != nil {
		return s.tls.conn
	}
	return s.conn
}

// readTLS builds the service's TLS setup: certificates and keys are read
// here, in New, which the master runs before the child chroots and drops to
// mail_owner (key files are usually root's, mode 0600).
func (s *Server) readTLS() error {
	log := s.d.Log
	t, err := tlsconf.NewServer(s.d.Config, func(msg string) { log.Warning("%s", msg) })
	if err != nil {
		return err
	}
	s.tls = t
	return nil
}

// offerSTARTTLS reports whether EHLO advertises STARTTLS: the level allows
// it, a certificate exists, TLS is not already on, and
// smtpd_discard_ehlo_keywords does not hide it.
func (s *session) offerSTARTTLS() bool {
	t := s.srv.tls
	return t != nil && t.Offered() && !t.Wrapper && t.Level != tlsconf.LevelNone &&
		s.tls == nil && !s.set.discardEHLO["STARTTLS"]
}

// mustStartTLS is smtpd_tls_security_level = encrypt before the handshake:
// every command but those allowed before TLS gets RFC 3207 §4's refusal
// (Postfix's SMTPD_CMD_FLAG_PRE_TLS commands: HELO, EHLO, STARTTLS, NOOP,
// RSET, QUIT, and the XCLIENT/XFORWARD moat does not have).
func (s *session) mustStartTLS(name string) bool {
	t := s.srv.tls
	if t == nil || s.tls != nil || t.Level != tlsconf.LevelEncrypt || t.Wrapper {
		return false
	}
	switch name {
	case "helo", "ehlo", "starttls", "noop", "rset", "quit":
		return false
	}
	s.reply(smtp.NewReply(530, "5.7.0", "Must issue a STARTTLS command first"))
	return true
}

// starttlsCmd is STARTTLS (RFC 3207), with Postfix's replies.
func (s *session) starttlsCmd(arg string) (bool, error) {
	t := s.srv.tls
	switch {
	case arg != "":
		s.reply(smtp.NewReply(501, "5.5.4", "Syntax: STARTTLS"))
		return false, nil
	case s.tls != nil:
		s.reply(smtp.NewReply(554, "5.5.1", "Error: TLS already active"))
		return false, nil
	case t == nil || t.Level == tlsconf.LevelNone || t.Wrapper || s.set.discardEHLO["STARTTLS"]:
		s.reply(smtp.NewReply(502, "5.5.1", "Error: command not implemented"))
		return false, nil
	case !t.Offered():
		s.reply(smtp.NewReply(454, "4.7.0", "TLS not available due to local problem"))
		return false, nil
	}
	if !s.anvilTLSAllowed(false) {
		return false, nil
	}
	s.write(smtp.NewReply(220, "2.0.0", "Ready to start TLS"))
	if s.werr != nil {
		return false, errEndSession
	}
	if !s.handshake() {
		return false, errEndSession
	}
	// RFC 3207 §4.2: everything learned before TLS is forgotten (the
	// HELO name, a transaction, a SASL login); the client starts again
	// with EHLO.
	s.abortTx()
	s.resetAuth()
	s.helo, s.proto = "", ""
	s.pipeline = false
	s.heloDecision = nil
	s.offered = smtp.Options{}
	return true, nil
}

// handshake runs the server side of TLS on the connection, bounded by
// smtpd_starttls_timeout. Whatever the client sent before the handshake and
// the session has buffered is dropped here, never read as commands inside
// TLS (CVE-2011-0411, STARTTLS command injection). false means the session is
// over (logged).
func (s *session) handshake() bool {
	t := s.srv.tls
	// Buffered plaintext goes with the old reader.
	s.br = bufio.NewReaderSize(connReader{s}, readBufSize)
	tc := tls.Server(s.conn, t.Config)
	limit := time.Now().Add(t.HandshakeTimeout)
	if s.sessionEnd.Before(limit) {
		limit = s.sessionEnd
	}
	if err := s.conn.SetDeadline(limit); err != nil {
		return false
	}
	ctx, cancel := context.WithDeadline(s.ctx, limit)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.log.Info("SSL_accept error from %s: %v", s.client, err)
		s.log.Info("%s", maillog.After(maillog.LostConnection, s.state, s.client))
		return false
	}
	_ = s.conn.SetDeadline(time.Time{})
	info := t.Describe(tc.ConnectionState())
	s.tls = &tlsState{conn: tc, info: info}
	if t.LogLevel >= 1 {
		s.log.Info("%s", info.Summary(s.client.String()))
	}
	if !tc.ConnectionState().DidResume && !s.anvilTLSCount() {
		return false
	}
	if t.ReqCert && !info.PeerTrusted {
		why := "No client certificate presented"
		if info.PeerPresent {
			why = "Client certificate not trusted"
		}
		s.log.Info("NOQUEUE: abort: TLS from %s: %s", s.client, why)
		s.write(smtp.NewReply(421, "4.7.1", s.set.myhostname+" Error: "+why))
		return false
	}
	return true
}

// wrapperTLS is smtpd_tls_wrappermode: TLS before the greeting (smtps,
// RFC 8314 implicit TLS).
func (s *session) wrapperTLS() bool {
	if s.srv.tls == nil || !s.srv.tls.Wrapper {
		return true
	}
	if !s.anvilTLSAllowed(true) {
		return false
	}
	return s.handshake()
}

// tlsView is the session's TLS for restrictions and policy servers
// (permit_tls_clientcerts, check_ccert_access); nil in plaintext.
func (s *session) tlsView() *TLSInfo {
	if s.tls == nil {
		return nil
	}
	i := s.tls.info
	v := &TLSInfo{Protocol: i.Protocol, Cipher: i.Cipher, Bits: i.Bits}
	if i.PeerPresent {
		v.PeerSubject, v.PeerIssuer = i.PeerCN, i.IssuerCN
		v.PeerVerified = i.PeerTrusted
		v.CertFingerprint, v.KeyFingerprint = i.CertFingerprint, i.KeyFingerprint
	}
	return v
}

// receivedTLS is the Received: header's TLS clause when
// smtpd_tls_received_header = yes (postconf(5)); nil otherwise.
func (s *session) receivedTLS() *cleanup.TLSInfo {
	if s.tls == nil || !s.srv.tls.ReceivedHeader {
		return nil
	}
	i := s.tls.info
	return &cleanup.TLSInfo{
		Version: i.Protocol, Cipher: i.Cipher, UsedBits: i.Bits, CipherBits: i.Bits,
		KeyExchange: i.KeyExchange,
		ClientCert:  i.ClientCertComment(s.srv.tls.AskCert),
	}
}

// receivedProto is RFC 3848's with-protocol for Received: "ESMTPS" once
// TLS is on. (AUTH appends its "A" after the "S": ESMTPSA.)
func (s *session) receivedProto() string {
	if s.tls != nil && s.proto == "ESMTP" {
		return s.proto + "S"
	}
	return s.proto
}
