// Package sasl is smtpd's SMTP AUTH server side (RFC 4954): the mechanism
// exchanges (PLAIN RFC 4616, LOGIN, CRAM-MD5 RFC 2195, SCRAM-SHA-256
// RFC 5802/7677) and the backends that check credentials — Dovecot's auth
// service (smtpd_sasl_type = dovecot, Postfix's SASL_README "Dovecot SASL")
// and moat's own password table (smtpd_sasl_type = moat,
// smtpd_sasl_password_maps; docs/SASL.md).
//
// smtpd drives an Exchange: it decodes each client response from base64,
// calls Step, and encodes the challenge it gets back in a 334 reply, so
// nothing here knows about SMTP replies or base64 on the wire.
package sasl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Mechanism names as they appear in the EHLO AUTH line.
const (
	Plain       = "PLAIN"
	Login       = "LOGIN"
	CRAMMD5     = "CRAM-MD5"
	SCRAMSHA256 = "SCRAM-SHA-256"
)

// Flags are a mechanism's security properties, in Dovecot's auth protocol
// terms (its MECH line: "plaintext", "dictionary", "active", "anonymous",
// "mutual-auth"), which is also how Postfix's Dovecot client filters them
// against smtpd_sasl_security_options (xsasl_dovecot_server.c).
type Flags uint8

// The properties: the first four are weaknesses a security option can
// exclude, MutualAuth a strength that mutual_auth requires.
const (
	FlagPlaintext  Flags = 1 << iota // the password crosses the wire (PLAIN, LOGIN)
	FlagDictionary                   // open to passive dictionary attack (CRAM-MD5)
	FlagActive                       // open to active, non-dictionary attack
	FlagAnonymous                    // no identity at all (ANONYMOUS)
	FlagMutualAuth                   // the server proves itself too (SCRAM)
)

// Mech is one mechanism a backend offers.
type Mech struct {
	Name  string
	Flags Flags
}

// SecurityOptions are smtpd_sasl_security_options or
// smtpd_sasl_tls_security_options (postconf(5)): which kinds of mechanism
// may be offered.
type SecurityOptions struct {
	NoPlaintext, NoDictionary, NoActive, NoAnonymous, MutualAuth bool
}

// ParseSecurityOptions reads a security options value: a list of
// noanonymous, noplaintext, noactive, nodictionary, mutual_auth separated
// by blanks or commas (postconf(5) smtpd_sasl_security_options). An unknown
// word is an error naming it, so a typo cannot silently weaken the list.
func ParseSecurityOptions(v string) (SecurityOptions, error) {
	var o SecurityOptions
	for _, w := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		switch strings.ToLower(w) {
		case "noanonymous":
			o.NoAnonymous = true
		case "noplaintext":
			o.NoPlaintext = true
		case "noactive":
			o.NoActive = true
		case "nodictionary":
			o.NoDictionary = true
		case "mutual_auth":
			o.MutualAuth = true
		case "forward_secrecy":
			// Cyrus accepts it; no mechanism here has forward secrecy, so
			// nothing is offered, which is what it asks for.
			o.MutualAuth, o.NoPlaintext, o.NoDictionary, o.NoActive = true, true, true, true
		default:
			return o, fmt.Errorf("unknown SASL security option %q", w)
		}
	}
	return o, nil
}

// Allows reports whether a mechanism with flags f may be offered.
func (o SecurityOptions) Allows(f Flags) bool {
	switch {
	case o.NoPlaintext && f&FlagPlaintext != 0,
		o.NoDictionary && f&FlagDictionary != 0,
		o.NoActive && f&FlagActive != 0,
		o.NoAnonymous && f&FlagAnonymous != 0,
		o.MutualAuth && f&FlagMutualAuth == 0:
		return false
	}
	return true
}

// Filter returns the mechanisms o allows, in the backend's order.
func (o SecurityOptions) Filter(ms []Mech) []Mech {
	var out []Mech
	for _, m := range ms {
		if o.Allows(m.Flags) {
			out = append(out, m)
		}
	}
	return out
}

// ConnInfo is what a backend may know about the session: Dovecot's AUTH
// parameters service=, rip=, lip=, rport=, lport= and secured.
type ConnInfo struct {
	Service    string // smtpd_sasl_service, "smtp"
	ClientAddr netip.Addr
	ClientPort uint16
	LocalAddr  netip.Addr
	LocalPort  uint16
	Secured    bool // the session is inside TLS
}

// Backend checks credentials. One Backend serves all sessions of a service
// generation and must be safe for concurrent use.
type Backend interface {
	// Mechanisms lists what the backend can run, before any security
	// options are applied.
	Mechanisms(ctx context.Context) ([]Mech, error)
	// Start begins an exchange for mech. An error is a failure to reach
	// the backend (temporary); an unknown mechanism is ErrNoMech.
	Start(ctx context.Context, mech string, ci ConnInfo) (Exchange, error)
	// Close releases the backend.
	Close() error
}

// Exchange is one AUTH command's conversation.
type Exchange interface {
	// Step takes the client's next response (nil for the first step
	// when AUTH carried no initial response; empty for "=") and returns
	// the next challenge, or done with the authenticated user. A
	// failure is a *Failure.
	Step(ctx context.Context, resp []byte) (challenge []byte, done bool, err error)
	// User is the login name once known, even after a failure (for the
	// log's sasl_username=).
	User() string
	// Close ends the exchange (a cancelled AUTH, a lost client).
	Close()
}

// Failure is an authentication that did not succeed: Reason is what
// Postfix shows after "authentication failed: " in the 535 reply and the
// warning; Temporary makes it a 454 4.7.0 instead.
type Failure struct {
	Reason    string
	Temporary bool
}

func (f *Failure) Error() string {
	if f.Temporary {
		return "temporary authentication failure: " + f.Reason
	}
	return "authentication failed: " + f.Reason
}

// ErrNoMech is Start's error for a mechanism the backend does not run;
// smtpd answers it with Postfix's "Invalid authentication mechanism".
var ErrNoMech = errors.New("invalid authentication mechanism")

// failed is the reason the built-in mechanisms give for wrong credentials,
// Cyrus SASL's wording, which admins and fail2ban know from Postfix.
func failed() error { return &Failure{Reason: "authentication failure"} }

// AsFailure returns err as a *Failure, or nil.
func AsFailure(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return nil
}
