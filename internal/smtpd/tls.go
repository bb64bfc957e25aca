package smtpd

import "crypto/tls"

// tlsState is the session's TLS layer once STARTTLS (RFC 3207) or the smtps
// wrapper mode has completed the handshake; nil in plaintext.
type tlsState struct {
	conn *tls.Conn
	info *TLSInfo
}

// tlsActive reports whether the session is encrypted: AUTH's
// smtpd_tls_auth_only and smtpd_sasl_tls_security_options depend on it.
func (s *session) tlsActive() bool { return s.tls != nil }
