package policy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Request is one policy query: every attribute Postfix 3.7's smtpd sends
// (SMTPD_POLICY_README "Protocol description"), plus compatibility_level
// and mail_version from Settings (Postfix 3.8's additions). The caller fills
// what the session knows; empty strings are sent as empty values, as Postfix
// sends them.
type Request struct {
	// ProtocolState is the command being checked: CONNECT, EHLO, HELO,
	// MAIL, RCPT, DATA, END-OF-MESSAGE, VRFY or ETRN.
	ProtocolState string
	// ProtocolName is SMTP, ESMTP or LMTP (LMTP with a UNIX socket).
	ProtocolName string
	HeloName     string
	QueueID      string
	// Sender and Recipient are addresses without angle brackets, the null
	// sender as "".
	Sender, Recipient string
	// RecipientCount is non-zero only at DATA and END-OF-MESSAGE, as in
	// Postfix.
	RecipientCount int
	ClientAddress  string
	// ClientName is the verified client name or "unknown";
	// ReverseClientName the PTR name or "unknown".
	ClientName, ReverseClientName string
	ClientPort                    string
	// Instance is unique per message transaction, so a server can tell
	// the recipients of one message from those of the next.
	Instance                             string
	SASLMethod, SASLUsername, SASLSender string
	// Size is the SIZE= estimate at MAIL/RCPT, the actual size at
	// END-OF-MESSAGE.
	Size                                     int64
	CCertSubject, CCertIssuer                string
	CCertFingerprint, CCertPubkeyFingerprint string
	EncryptionProtocol, EncryptionCipher     string
	EncryptionKeysize                        int
	EtrnDomain                               string
	// Stress is "yes" when the service is under stress (overload).
	Stress string
	// PolicyContext is normally left empty: Query sends Settings.Context
	// unless this is set.
	PolicyContext             string
	ServerAddress, ServerPort string
}

// Limits on a policy server's reply. Postfix's attr_scan_plain has no
// explicit limit of its own; moat bounds memory per connection and treats
// anything longer as a protocol failure.
const (
	// MaxReplyLine is the longest reply line accepted, newline included.
	MaxReplyLine = 4096
	// MaxReplyAttrs is the most attribute lines accepted in one reply.
	MaxReplyAttrs = 64
)

// ErrProtocol marks a reply that breaks the policy protocol (missing
// action, over-long, malformed), as opposed to a network failure.
var ErrProtocol = errors.New("policy protocol error")

// encode writes r in the plain attribute format, in Postfix's order
// (smtpd_check.c check_policy_service), ending with the empty line.
func (r *Request) encode(s *Settings) []byte {
	var b bytes.Buffer
	put := func(name, value string) {
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(sanitize(value))
		b.WriteByte('\n')
	}
	ctx := r.PolicyContext
	if ctx == "" {
		ctx = s.Context
	}
	put("request", "smtpd_access_policy")
	put("protocol_state", r.ProtocolState)
	put("protocol_name", r.ProtocolName)
	put("client_address", r.ClientAddress)
	put("client_name", r.ClientName)
	put("client_port", r.ClientPort)
	put("reverse_client_name", r.ReverseClientName)
	put("server_address", r.ServerAddress)
	put("server_port", r.ServerPort)
	put("helo_name", r.HeloName)
	put("sender", r.Sender)
	put("recipient", r.Recipient)
	put("recipient_count", strconv.Itoa(r.RecipientCount))
	put("queue_id", r.QueueID)
	put("instance", r.Instance)
	put("size", strconv.FormatInt(max(r.Size, 0), 10))
	put("etrn_domain", r.EtrnDomain)
	put("stress", r.Stress)
	put("sasl_method", r.SASLMethod)
	put("sasl_username", r.SASLUsername)
	put("sasl_sender", r.SASLSender)
	put("ccert_subject", xtext(r.CCertSubject))
	put("ccert_issuer", xtext(r.CCertIssuer))
	put("ccert_fingerprint", r.CCertFingerprint)
	put("ccert_pubkey_fingerprint", r.CCertPubkeyFingerprint)
	put("encryption_protocol", r.EncryptionProtocol)
	put("encryption_cipher", r.EncryptionCipher)
	put("encryption_keysize", strconv.Itoa(r.EncryptionKeysize))
	put("policy_context", ctx)
	put("compatibility_level", s.CompatibilityLevel)
	put("mail_version", s.MailVersion)
	b.WriteByte('\n')
	return b.Bytes()
}

// sanitize keeps a value on its line: a newline would end the attribute (or
// the whole request) early and let a client inject attributes, so control
// characters become '?', as Postfix's printable() does to unsafe bytes.
func sanitize(v string) string {
	if strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0 {
		return v
	}
	b := []byte(v)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// xtext encodes s as RFC 3461 section 4 xtext: '+', '=' and bytes outside
// '!'..'~' become "+XX" (Postfix's xtext_quote with no extra specials).
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// readReply reads one reply (name=value lines up to an empty line) and
// returns its action, as Postfix's attr_scan_plain reads it for smtpd: the
// first action attribute counts, other attributes (later actions too) and
// lines without '=' are skipped, so servers may send what Postfix ignores.
// A reply without a non-empty action, an "action" line without '=', an
// over-long line or too many lines is an ErrProtocol failure.
func readReply(br *bufio.Reader) (string, error) {
	action, have := "", false
	for n := 0; ; n++ {
		line, err := readLine(br)
		if err != nil {
			return "", err
		}
		if line == "" {
			break
		}
		if n >= MaxReplyAttrs {
			return "", fmt.Errorf("%w: more than %d reply attributes", ErrProtocol, MaxReplyAttrs)
		}
		name, value, ok := strings.Cut(line, "=")
		if have || name != "action" {
			continue
		}
		if !ok {
			return "", fmt.Errorf("%w: missing value for attribute action", ErrProtocol)
		}
		action, have = value, true
	}
	if !have {
		return "", fmt.Errorf("%w: missing attribute action", ErrProtocol)
	}
	if strings.TrimSpace(action) == "" {
		return "", fmt.Errorf("%w: empty action", ErrProtocol)
	}
	return action, nil
}

// readLine reads one "\n"-terminated line (a trailing "\r" is dropped, as
// some servers send CRLF) of at most MaxReplyLine bytes.
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > MaxReplyLine {
			return "", fmt.Errorf("%w: reply line longer than %d bytes", ErrProtocol, MaxReplyLine)
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			if len(buf) > 0 {
				return "", fmt.Errorf("%w: reply truncated", ErrProtocol)
			}
			return "", fmt.Errorf("server closed the connection: %w", io.EOF)
		}
		return "", err
	}
	buf = buf[:len(buf)-1]
	if n := len(buf); n > 0 && buf[n-1] == '\r' {
		buf = buf[:n-1]
	}
	return string(buf), nil
}
