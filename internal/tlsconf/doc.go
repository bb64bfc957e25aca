// Package tlsconf builds the server side of TLS for smtpd(8) from a
// service's parameters (postconf(5) smtpd_tls_*): the security level, the
// certificates, the protocol and cipher choice mapped onto crypto/tls, client
// certificates and their fingerprints, and the texts Postfix logs and puts in
// Received: for a TLS session.
//
// crypto/tls is not OpenSSL: cipher strings, curve lists and OpenSSL options
// cannot all be expressed. Whatever a parameter asks that Go cannot do is a
// warning naming the parameter (docs/TLS.md lists them), and moat never goes
// below its floor: TLS 1.2, ECDHE key exchange, AEAD ciphers only.
package tlsconf
