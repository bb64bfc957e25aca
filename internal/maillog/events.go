package maillog

import (
	"net/netip"
	"strconv"
	"strings"
)

// The texts below are the ones Postfix's smtpd, cleanup and qmgr log and
// that fail2ban's postfix filter, pflogsumm and admins' scripts parse.
// Every daemon formats them through these helpers, once, so they cannot
// drift apart.

// Client identifies an SMTP client the way Postfix's logs do.
type Client struct {
	// Name is the verified client host name; "" logs as "unknown", as
	// Postfix does when reverse and forward DNS do not agree.
	Name string
	Addr netip.Addr
	Port uint16
	// LogPort appends ":port" (postconf(5) smtpd_client_port_logging).
	LogPort bool
}

// String returns "name[addr]" or, with LogPort, "name[addr]:port": the
// client form of every smtpd log line.
func (c Client) String() string {
	name := c.Name
	if name == "" {
		name = "unknown"
	}
	s := name + "[" + AddrString(c.Addr) + "]"
	if c.LogPort {
		s += ":" + strconv.Itoa(int(c.Port))
	}
	return s
}

// AddrString returns an address as Postfix logs it: IPv4 dotted quad; an
// IPv4-mapped IPv6 address as plain IPv4 (Postfix converts these when IPv4
// is enabled); other IPv6 addresses in RFC 5952 compressed lower-case form
// without the "IPv6:" prefix (that belongs in Received: headers and
// address literals, not here), with a link-local zone as "%zone" the way
// getnameinfo(3) prints it. An invalid address logs as "unknown".
func AddrString(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.Unmap().String()
}

// Connect returns "connect from name[addr]".
func Connect(c Client) string { return "connect from " + c.String() }

// Event names what ended or interrupted a session, the first words of
// Postfix's "EVENT after STATE from client" lines.
type Event string

// The events Postfix's smtpd logs with "after".
const (
	LostConnection Event = "lost connection"
	Timeout        Event = "timeout"
	TooManyErrors  Event = "too many errors"
)

// The session states Postfix names after "after" besides the SMTP verbs
// (which it logs in upper case: "RCPT", "DATA").
const (
	StateConnect      = "CONNECT"        // before the first command
	StateEndOfMessage = "END-OF-MESSAGE" // after the final "."
	StateUnknown      = "UNKNOWN"        // an unrecognised command
)

// After returns "EVENT after STATE from name[addr]", e.g. "lost connection
// after RCPT from x[192.0.2.1]".
func After(ev Event, state string, c Client) string {
	return string(ev) + " after " + state + " from " + c.String()
}

// AfterBytes returns the DATA/BDAT form, which also says how much content
// had arrived: "timeout after DATA (1234 bytes) from name[addr]".
func AfterBytes(ev Event, state string, n int64, c Client) string {
	return string(ev) + " after " + state + " (" + strconv.FormatInt(n, 10) + " bytes) from " + c.String()
}

// cmdNames are the commands smtpd counts, in the order Postfix lists them
// in the disconnect record (its command table's order), then "unknown".
// (A function, not a package variable, so nothing can change it.)
func cmdNames() [nCmds]string {
	return [nCmds]string{
		"helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt",
		"data", "bdat", "rset", "noop", "vrfy", "etrn", "quit", "unknown",
	}
}

const (
	nCmds      = 16
	cmdUnknown = nCmds - 1
)

// Commands counts a session's commands for the disconnect record: for each
// command how many were issued and how many succeeded (a 2xx or 3xx
// reply). The zero value is ready to use; it is not safe for concurrent
// use (one session, one goroutine).
type Commands struct {
	ok, total [nCmds]int
}

// Count records one command; verb is case-insensitive and any verb smtpd
// does not implement counts as "unknown".
func (s *Commands) Count(verb string, ok bool) {
	i := cmdUnknown
	names := cmdNames()
	for j, n := range names[:cmdUnknown] {
		if strings.EqualFold(verb, n) {
			i = j
			break
		}
	}
	s.total[i]++
	if ok {
		s.ok[i]++
	}
}

// String returns the counters as Postfix appends them to the disconnect
// record: " name=ok" for each command issued (" name=ok/total" when some
// failed), then " commands=ok" or " commands=ok/total"; a session without
// commands gives " commands=0/0", the mark of port scanners that fail2ban
// and admins look for.
func (s *Commands) String() string {
	var b strings.Builder
	okAll, totalAll := 0, 0
	for i, n := range cmdNames() {
		if s.total[i] == 0 {
			continue
		}
		okAll += s.ok[i]
		totalAll += s.total[i]
		b.WriteByte(' ')
		b.WriteString(n)
		b.WriteByte('=')
		writeRatio(&b, s.ok[i], s.total[i])
	}
	b.WriteString(" commands=")
	writeRatio(&b, okAll, totalAll)
	return b.String()
}

func writeRatio(b *strings.Builder, ok, total int) {
	b.WriteString(strconv.Itoa(ok))
	if ok != total || total == 0 {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(total))
	}
}

// Disconnect returns "disconnect from name[addr] ehlo=1 mail=1 rcpt=0/1
// commands=2/3".
func Disconnect(c Client, cmds *Commands) string {
	return "disconnect from " + c.String() + cmds.String()
}

// Envelope is what Postfix appends to a reject (or warn, hold, discard,
// ...) record about the transaction so far. A field is logged only once
// known, which is why the sender and recipient carry flags: a null sender
// is logged as from=<>, an absent one not at all. Addresses are logged as
// given: pass them in the form info_log_address_format asks for (Postfix
// 3.5+ defaults to "external", with a quoted local part where RFC 5321
// needs one).
type Envelope struct {
	Sender       string
	HasSender    bool
	Recipient    string
	HasRecipient bool
	Proto        string // "SMTP" or "ESMTP"; "" omits proto=
	Helo         string // "" omits helo=
}

// NoQueue is the queue ID Postfix logs before a message has one.
const NoQueue = "NOQUEUE"

// writeTo appends the " from=<...> to=<...> proto=... helo=<...>" fields
// that Postfix puts after reject and content-action texts (and that
// fail2ban and pflogsumm parse), leaving out the ones not known yet.
func (env Envelope) writeTo(b *strings.Builder) {
	if env.HasSender {
		b.WriteString(" from=<" + env.Sender + ">")
	}
	if env.HasRecipient {
		b.WriteString(" to=<" + env.Recipient + ">")
	}
	if env.Proto != "" {
		b.WriteString(" proto=" + env.Proto)
	}
	if env.Helo != "" {
		b.WriteString(" helo=<" + env.Helo + ">")
	}
}

// Whatsup returns an access-decision record, "QUEUEID: ACTION: STATE from
// name[addr]: REPLY; from=<s> to=<r> proto=ESMTP helo=<h>", e.g.
// "NOQUEUE: reject: RCPT from x[192.0.2.1]: 554 5.7.1 <u@example.com>:
// Relay access denied; from=<a@example.org> to=<u@example.com> proto=ESMTP
// helo=<x>". queueID "" means NOQUEUE. action is "reject",
// "reject_warning" (warn_if_reject), "warn", "hold", "discard", "filter",
// "redirect" or "milter-reject"; reply is the SMTP reply for rejects and
// the reason text for the others.
func Whatsup(queueID, action, state string, c Client, reply string, env Envelope) string {
	if queueID == "" {
		queueID = NoQueue
	}
	var b strings.Builder
	b.WriteString(queueID)
	b.WriteString(": ")
	b.WriteString(action)
	b.WriteString(": ")
	b.WriteString(state)
	b.WriteString(" from ")
	b.WriteString(c.String())
	b.WriteString(": ")
	b.WriteString(reply)
	b.WriteByte(';')
	env.writeTo(&b)
	return b.String()
}

// Reject returns Whatsup's "reject" record, the commonest one.
func Reject(queueID, state string, c Client, reply string, env Envelope) string {
	return Whatsup(queueID, "reject", state, c, reply, env)
}

// ClientInfo is the optional part of the "QUEUEID: client=" record: the
// SASL login that sent the message, and for mail coming back from a content
// filter over XFORWARD, the original queue ID and client.
type ClientInfo struct {
	SASLMethod   string
	SASLUsername string
	SASLSender   string
	OrigQueueID  string
	OrigClient   string
}

// ClientLine returns smtpd's first record of a message, "QUEUEID:
// client=name[addr]", followed by ", sasl_method=PLAIN, sasl_username=u"
// and the other ClientInfo fields that are set. pflogsumm and admins join
// a message's records on this queue ID.
func ClientLine(queueID string, c Client, info ClientInfo) string {
	var b strings.Builder
	b.WriteString(queueID)
	b.WriteString(": client=")
	b.WriteString(c.String())
	for _, f := range [...]struct{ k, v string }{
		{"sasl_method", info.SASLMethod},
		{"sasl_username", info.SASLUsername},
		{"sasl_sender", info.SASLSender},
		{"orig_queue_id", info.OrigQueueID},
		{"orig_client", info.OrigClient},
	} {
		if f.v != "" {
			b.WriteString(", " + f.k + "=" + f.v)
		}
	}
	return b.String()
}

// MessageID returns cleanup's "QUEUEID: message-id=VALUE" record. value is
// the Message-ID header's value as received, normally with its angle
// brackets ("<1234@example.com>"); "" logs as "<>", the value Postfix
// logs for a message without one.
func MessageID(queueID, value string) string {
	if value == "" {
		value = "<>"
	}
	return queueID + ": message-id=" + value
}

// QueueActive returns qmgr's record for a message entering the active
// queue: "QUEUEID: from=<sender>, size=N, nrcpt=N (queue active)"; the
// null sender logs as from=<>.
func QueueActive(queueID, sender string, size int64, nrcpt int) string {
	return queueID + ": from=<" + sender + ">, size=" + strconv.FormatInt(size, 10) +
		", nrcpt=" + strconv.Itoa(nrcpt) + " (queue active)"
}

// Removed returns qmgr's last record of a message, "QUEUEID: removed".
func Removed(queueID string) string { return queueID + ": removed" }

// SASLAuthFailed returns the text of smtpd's warning for a failed AUTH,
// "name[addr]: SASL LOGIN authentication failed: REASON", which fail2ban's
// postfix-sasl jail bans on; log it with Warning.
func SASLAuthFailed(c Client, mechanism, reason string) string {
	return c.String() + ": SASL " + mechanism + " authentication failed: " + reason
}

// MaxPipelined is how much of the unexpected input ImproperPipelining
// shows: enough to recognise the client's software, not enough to let it
// fill the log.
const MaxPipelined = 100

// ImproperPipelining returns smtpd's record for a client that sent commands
// before it was allowed to (reject_unauth_pipelining, or talking before
// the greeting): "improper command pipelining after STATE from
// name[addr]: DATA", DATA being the first MaxPipelined bytes of the
// pending input with C escapes (\r, \n, \t, \\, \ooo for other bytes
// outside printable ASCII) as Postfix's escape() writes them. fail2ban's
// postfix filter bans on it.
func ImproperPipelining(state string, c Client, pending []byte) string {
	if len(pending) > MaxPipelined {
		pending = pending[:MaxPipelined]
	}
	var b strings.Builder
	b.WriteString("improper command pipelining after " + state + " from " + c.String() + ": ")
	for _, ch := range pending {
		switch {
		case ch == '\\':
			b.WriteString(`\\`)
		case ch >= 0x20 && ch < 0x7f:
			b.WriteByte(ch)
		default:
			switch ch {
			case '\a':
				b.WriteString(`\a`)
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			case '\v':
				b.WriteString(`\v`)
			default:
				b.WriteByte('\\')
				b.WriteByte('0' + ch>>6)
				b.WriteByte('0' + ch>>3&7)
				b.WriteByte('0' + ch&7)
			}
		}
	}
	return b.String()
}

// MaxContentShown is how much of a matched header or body line
// ContentAction shows, as Postfix's cleanup does.
const MaxContentShown = 200

// ContentAction returns cleanup's record for a header_checks or
// body_checks action (header_checks(5)): "QUEUEID: ACTION: CLASS CONTENT
// from ORIGIN; from=<s> to=<r> proto=ESMTP helo=<h>: TEXT", e.g.
// "4Nx3: reject: header Subject: win big from x[192.0.2.1]; from=<a@b>
// to=<c@d> proto=ESMTP helo=<x>: 5.7.1 spam". class is "header" or "body";
// content, the matched line, is cut to MaxContentShown bytes; origin ""
// logs as "unknown"; text, the action's optional text, is omitted when
// empty. pflogsumm counts these as content rejects.
func ContentAction(queueID, action, class, content, origin string, env Envelope, text string) string {
	content = truncate(content, MaxContentShown)
	if origin == "" {
		origin = "unknown"
	}
	var b strings.Builder
	b.WriteString(queueID + ": " + action + ": " + class + " " + content + " from " + origin + ";")
	env.writeTo(&b)
	if text != "" {
		b.WriteString(": " + text)
	}
	return b.String()
}
