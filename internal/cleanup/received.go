package cleanup

import (
	"fmt"
	"strings"
	"time"
)

// TLSInfo describes the TLS session for the Received: header that
// smtpd_tls_received_header = yes asks for (postconf(5)).
type TLSInfo struct {
	Version    string // "TLSv1.3"
	Cipher     string // "TLS_AES_256_GCM_SHA384"
	UsedBits   int
	CipherBits int
	// KeyExchange, ServerSignature (with ServerSigBits, e.g. "RSA-PSS",
	// 2048) and ServerDigest form the second line Postfix 3.4 and later
	// write; empty KeyExchange leaves it out.
	KeyExchange     string
	ServerSignature string
	ServerSigBits   int
	ServerDigest    string
	// ClientCert says what the client's certificate was: "" for "(No
	// client certificate requested)", or the complete comment, e.g.
	// "Client did not present a certificate" or
	// `Client CN "x", Issuer "y" (verified OK)`.
	ClientCert string
}

// ReceivedInfo is what the SMTP server knows when it starts the message.
type ReceivedInfo struct {
	Helo       string // the HELO/EHLO argument; "" if none was given
	ClientName string // verified client name or "unknown"
	ClientAddr string // in Received: form: "192.0.2.1" or "IPv6:2001:db8::1"
	TLS        *TLSInfo
	// AuthSender is the SASL login name, shown only when
	// smtpd_sasl_authenticated_header = yes (the caller decides).
	AuthSender string
	MyHostname string
	MailName   string // mail_name; moat's own name, not "Postfix"
	Protocol   string // with-protocol of RFC 3848: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA
	QueueID    string
	// Recipients are the envelope recipients; exactly one is shown in a
	// "for" clause (RFC 5321 §4.4), more are not disclosed.
	Recipients []string
	Time       time.Time
}

// MailDate formats t as Postfix's mail_date() does for Date: and
// Received: headers: RFC 5322 §3.3 with a space-padded day and the zone
// name as a comment, "Wed,  7 Oct 2026 13:57:37 +0000 (UTC)".
func MailDate(t time.Time) string {
	return t.Format("Mon, _2 Jan 2006 15:04:05 -0700 (MST)")
}

// FormatReceived returns the Received: header (RFC 5321 §4.4) the SMTP
// server puts at the top of the message, in Postfix's layout, folded with
// "\n\t" and without a final line ending:
//
//	Received: from helo (name [addr])
//		(using TLSv1.3 with cipher C (256/256 bits)
//		 key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)
//		(No client certificate requested)
//		(Authenticated sender: user)
//		by myhostname (mail_name) with ESMTPSA id QUEUEID
//		for <rcpt>; date
//
// Without HELO the client name stands in for it, as in Postfix.
func FormatReceived(r ReceivedInfo) string {
	var b strings.Builder
	helo := r.Helo
	if helo == "" {
		helo = r.ClientName
	}
	fmt.Fprintf(&b, "Received: from %s (%s [%s])", helo, r.ClientName, r.ClientAddr)
	if t := r.TLS; t != nil {
		fmt.Fprintf(&b, "\n\t(using %s with cipher %s (%d/%d bits)", t.Version, t.Cipher, t.UsedBits, t.CipherBits)
		if t.KeyExchange != "" {
			fmt.Fprintf(&b, "\n\t key-exchange %s", t.KeyExchange)
			if t.ServerSignature != "" {
				fmt.Fprintf(&b, " server-signature %s", t.ServerSignature)
				if t.ServerSigBits > 0 {
					fmt.Fprintf(&b, " (%d bits)", t.ServerSigBits)
				}
			}
			if t.ServerDigest != "" {
				fmt.Fprintf(&b, " server-digest %s", t.ServerDigest)
			}
		}
		b.WriteString(")")
		cc := t.ClientCert
		if cc == "" {
			cc = "No client certificate requested"
		}
		fmt.Fprintf(&b, "\n\t(%s)", cc)
	}
	if r.AuthSender != "" {
		fmt.Fprintf(&b, "\n\t(Authenticated sender: %s)", r.AuthSender)
	}
	fmt.Fprintf(&b, "\n\tby %s (%s) with %s id %s", r.MyHostname, r.MailName, r.Protocol, r.QueueID)
	if len(r.Recipients) == 1 {
		fmt.Fprintf(&b, "\n\tfor <%s>; %s", r.Recipients[0], MailDate(r.Time))
	} else {
		fmt.Fprintf(&b, ";\n\t%s", MailDate(r.Time))
	}
	return b.String()
}
