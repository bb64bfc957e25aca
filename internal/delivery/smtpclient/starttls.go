package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"

	"moat/internal/smtp"
	"moat/internal/tlsconf"
)

// TLSPolicy is what one connection's destination demands of TLS, decided
// by the agent from smtp_tls_security_level and smtp_tls_policy_maps
// (Postfix's smtp_tls_policy.c).
type TLSPolicy struct {
	// Level is the destination's security level.
	Level tlsconf.ClientLevel
	// Client holds the agent's TLS settings (roots, protocols, client
	// certificate, log level).
	Client *tlsconf.Client
	// Match is the certificate match strategies for verify and secure.
	Match []string
	// Host is the server's name (the MX host), Nexthop the next-hop
	// domain, for SNI and certificate name matching.
	Host, Nexthop string
	// DANE is set when the server's TLSA records authenticate it (RFC
	// 7672; Level is then ClientDane): the handshake itself checks the
	// chain against them.
	DANE *tlsconf.DANE
}

// STARTTLS texts and DSNs of Postfix's smtp_proto.c and smtp_trouble.c.
const (
	whileStartTLS = "sending STARTTLS command"
	whileTLS      = "performing the TLS handshake"
)

// startTLS runs STARTTLS (RFC 3207) after EHLO when the policy asks for
// it, verifies the server as the level demands and sends the second
// EHLO. A destination whose level forbids plaintext is deferred when TLS
// cannot be had: never sent in clear (RFC 3207 section 6's downgrade
// attack). false means the connection is to be closed; every pending
// recipient then has its outcome, is kept for the next server, or (after
// a failed handshake at "may") is left for the agent's plaintext retry.
func (s *session) startTLS() bool {
	p := s.w.TLS
	if p == nil || p.Level == tlsconf.ClientNone || s.w.tc != nil {
		return true
	}
	if p.Level.DANE() && p.DANE == nil {
		// The agent turns dane into may or encrypt when DANE does
		// not apply; a dane level without records must not go on
		// as anything weaker.
		s.failRest("4.7.5", "client TLS configuration problem", nil, "")
		s.quit()
		return false
	}
	if !s.w.Ext.Has("STARTTLS") {
		if p.Level == tlsconf.ClientMay {
			return true
		}
		s.failRest("4.7.4", fmt.Sprintf("TLS is required, but was not offered by host %s", s.w.Namaddr), nil, "")
		s.quit()
		return false
	}
	t := s.d.st.Helo
	s.w.send("STARTTLS", t)
	if err := s.w.flush(t); err != nil {
		s.ioFail(err, whileStartTLS)
		return false
	}
	rep, err := s.w.read(t)
	if err != nil {
		s.ioFail(err, whileStartTLS)
		return false
	}
	if rep.Code/100 != 2 {
		if p.Level == tlsconf.ClientMay {
			// Opportunistic: the server declined, go on in clear as
			// Postfix does.
			return true
		}
		s.failRest("4.7.5", fmt.Sprintf("TLS is required, but host %s refused to start TLS: %s", s.w.Namaddr, rep.LogText()), &rep, "STARTTLS")
		s.quit()
		return false
	}
	var cfg *tls.Config
	if p.DANE != nil {
		cfg = p.Client.DANEConfig(p.DANE, p.Host)
	} else {
		cfg = p.Client.Config(p.Level, p.Client.SNI(p.Host, p.Nexthop))
	}
	tc := tls.Client(s.w.c, cfg)
	ctx := s.d.ctx
	if to := p.Client.HandshakeTimeout; to > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, to)
		defer cancel()
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		if reason, ok := tlsconf.IsDANEError(err); ok {
			// tls_client.c's words for a chain that fails the
			// TLSA records; smtp_proto.c then defers the
			// untrusted server.
			if s.d.st.Log != nil {
				s.d.st.Log.Info("server certificate verification failed for %s: %s", s.w.Relay, reason)
			}
			s.failRest("4.7.5", "Server certificate not trusted", nil, "")
			return false
		}
		if s.d.st.Log != nil {
			s.d.st.Log.Info("SSL_connect error to %s: %v", s.w.Relay, err)
		}
		if p.Level == tlsconf.ClientMay {
			s.w.RetryPlain = true
			return false
		}
		s.failRest("4.7.5", "Cannot start TLS: handshake failure", nil, "")
		return false
	}
	s.w.tc = tc
	s.w.br = bufio.NewReaderSize(tc, 4096)
	cs := tc.ConnectionState()
	s.w.TLSState = &cs
	trusted, matched := true, true
	if p.DANE == nil {
		// DANE's check ran in the handshake (VerifyConnection).
		trusted, matched = p.Client.Verify(cs, p.Match, p.Host, p.Nexthop)
	}
	if p.Client.LogLevel >= 1 && s.d.st.Log != nil {
		s.d.st.Log.Info("%s", tlsconf.ServerSummary(cs, trusted, matched, s.w.Relay))
	}
	if p.Level == tlsconf.ClientVerify || p.Level == tlsconf.ClientSecure {
		if !trusted {
			s.failRest("4.7.5", "Server certificate not trusted", nil, "")
			s.quit()
			return false
		}
		if !matched {
			s.failRest("4.7.5", "Server certificate not verified", nil, "")
			s.quit()
			return false
		}
	}
	// RFC 3207 section 4.2: forget what was learned in clear.
	rep, ok := s.hello("EHLO", whileEHLO)
	if !ok {
		return false
	}
	if rep.Code/100 != 2 {
		s.failSession(rep.DSN(), fmt.Sprintf("host %s refused to talk to me: %s", s.w.Namaddr, rep.LogText()), &rep)
		s.quit()
		return false
	}
	s.w.Ext = smtp.ParseEHLO(rep)
	return true
}
