package smtpd

import (
	"context"
	"net/netip"

	"moat/internal/dns"
	"moat/internal/smtp"
)

// Stage names the point of the SMTP dialogue at which Postfix evaluates each
// restriction list (postconf(5) smtpd_client_restrictions,
// smtpd_helo_restrictions, smtpd_sender_restrictions,
// smtpd_recipient_restrictions, smtpd_data_restrictions,
// smtpd_end_of_data_restrictions).
type Stage int

// The stages, in dialogue order.
const (
	StageConnect Stage = iota
	StageHelo
	StageMail
	StageRcpt
	StageData
	StageEndOfData
	// StageEtrn is smtpd_etrn_restrictions, asked at ETRN only.
	StageEtrn
)

// String names the stage as Postfix logs the command it belongs to.
func (s Stage) String() string {
	switch s {
	case StageConnect:
		return "CONNECT"
	case StageHelo:
		return "HELO"
	case StageMail:
		return "MAIL"
	case StageRcpt:
		return "RCPT"
	case StageData:
		return "DATA"
	case StageEndOfData:
		return "END-OF-MESSAGE"
	case StageEtrn:
		return "ETRN"
	}
	return "UNKNOWN"
}

// View is the read-only picture of a session that a Policy decides on: what
// Postfix's restrictions can test (client, HELO, sender, recipient, SASL
// login, service).
type View struct {
	Service    string
	ClientName string // verified name or "unknown"
	// ReverseClientName is the PTR name whether or not it resolves back
	// to the address ("unknown" without one): Postfix's
	// reverse_client_name, for check_reverse_client_access and
	// reject_unknown_reverse_client_hostname.
	ReverseClientName string
	// ClientNameStatus is Postfix's peer code for the name lookup
	// (smtpd.h SMTPD_PEER_CODE_*): 2 verified, 4 temporary failure, 5
	// permanent failure (no PTR or no address), 6 forged (the name does not
	// map back to the address). 0 means no lookup was made
	// (smtpd_peername_lookup = no) and counts as 5.
	ClientNameStatus int
	// ReverseNameStatus is the peer code of the PTR lookup alone (2, 4 or
	// 5), Postfix's reverse_name_status.
	ReverseNameStatus int
	// DNS is the session's resolver with its per-session cache, for the
	// restrictions' DNS lookups (reject_rbl_client, reject_unknown_*).
	DNS        *dns.Session
	ClientAddr netip.Addr
	ClientPort uint16
	// ServerAddr and ServerPort are the local end of the connection
	// (policy protocol server_address, server_port).
	ServerAddr netip.Addr
	ServerPort uint16
	Helo       string
	Protocol   string // "SMTP" or "ESMTP"
	// Sender is the MAIL FROM address in internal form; HasSender tells
	// the null sender from none yet.
	Sender    string
	HasSender bool
	// Recipient is the address of the RCPT being decided (StageRcpt).
	Recipient string
	// Recipients are those accepted so far in this transaction.
	Recipients []string
	SASLUser   string // the AUTH login name; empty without AUTH
	SASLMethod string // the AUTH mechanism ("PLAIN", "CRAM-MD5")
	SASLSender string // MAIL FROM's AUTH= parameter, if any
	// TLS describes the session's TLS layer; nil in plaintext.
	TLS *TLSInfo
	// EtrnDomain is ETRN's argument (StageEtrn).
	EtrnDomain string
	// Size is MAIL's SIZE= (-1 if none), or the message's size at
	// StageEndOfData.
	Size int64
	// QueueID is set once the queue file exists (after the first RCPT).
	QueueID string
	// Instance names the transaction from MAIL on (the policy protocol's
	// "instance"), the same at every stage of one message.
	Instance string
}

// TLSInfo is what restrictions and policy servers may test about a TLS
// session (permit_tls_clientcerts, check_ccert_access, the policy
// protocol's ccert_* and encryption_* attributes).
type TLSInfo struct {
	Protocol string // "TLSv1.3"
	Cipher   string // the IANA suite name, as Postfix logs OpenSSL's
	Bits     int    // symmetric key size
	// The client certificate, if one was presented: its subject and
	// issuer common names, whether it chained to smtpd_tls_CAfile, and
	// the smtpd_tls_fingerprint_digest fingerprints of the certificate
	// and of its public key, as colon-separated upper-case hex bytes.
	PeerSubject, PeerIssuer         string
	PeerVerified                    bool
	CertFingerprint, KeyFingerprint string
}

// Decision is what a Policy returns. The zero Decision (or a nil one) means
// "continue". A Reply with a 4xx or 5xx code refuses the command; the actions
// (access(5) HOLD, DISCARD, FILTER, REDIRECT, PREPEND) apply to the
// transaction in progress and are carried out at the end of the message.
type Decision struct {
	Reply    smtp.Reply
	Hold     bool
	Discard  bool
	Filter   string   // transport:destination (access(5) FILTER)
	Redirect string   // access(5) REDIRECT address
	Prepend  []string // headers to add, "Name: value" (access(5) PREPEND)
	// Reason is logged with HOLD, DISCARD, FILTER and REDIRECT, as
	// Postfix's "ID: hold: RCPT from ...: REASON" records.
	Reason string
}

// Refuses reports whether d rejects or defers the command.
func (d *Decision) Refuses() bool { return d != nil && d.Reply.Code >= 400 }

// Policy decides at each stage; issue 6 implements it with Postfix's
// restriction lists. With smtpd_delay_reject = yes (the default), the session
// asks for StageConnect, StageHelo and StageMail again at each RCPT, as
// Postfix evaluates those lists at RCPT time (postconf(5)
// smtpd_delay_reject). An error is a temporary failure: the session replies
// "451 4.3.5 Server configuration error", as Postfix does when a restriction
// cannot be evaluated.
type Policy interface {
	Check(ctx context.Context, stage Stage, v *View) (*Decision, error)
}

// PolicyFunc adapts a function to Policy.
type PolicyFunc func(ctx context.Context, stage Stage, v *View) (*Decision, error)

// Check calls f.
func (f PolicyFunc) Check(ctx context.Context, stage Stage, v *View) (*Decision, error) {
	return f(ctx, stage, v)
}
