// Package delivery holds what the queue manager and its delivery agents
// share: one delivery request (a message and the recipients of it that go
// to one transport and next hop, Postfix's deliver_request(3)), one result
// per recipient, and the Agent interface each transport implements (local,
// virtual, pipe, lmtp; later smtp). The agents live in the packages below
// this one; the queue manager chooses one per master.cf service and records
// every result in the queue file before it logs it.
package delivery

import (
	"context"
	"io"
	"strconv"
	"time"

	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/queue"
)

// Request is one delivery request: one message, and the recipients of it
// that the queue manager sends to one transport and next hop in one go
// (<transport>_destination_recipient_limit of them; local(8) gets one).
type Request struct {
	// QueueID names the message in logs and in idempotent Maildir keys.
	QueueID string
	// Envelope is the message's envelope: the sender, the client it came
	// from (pipe's ${client_address}), Arrival, Flags (SMTPUTF8,
	// 8BITMIME). Agents must not change it.
	Envelope *queue.Envelope
	// Content returns a new reader over the message content (header and
	// body, lines ending in CRLF) each time it is called; reading it to the
	// end checks the queue file's content sum, so a damaged message is an
	// error, never delivered as if whole.
	Content func() io.Reader
	// Nexthop is the part after the transport in "transport:nexthop"
	// (transport(5)); for local and virtual it is the recipient domain,
	// for lmtp "unix:/path" or "inet:host:port".
	Nexthop string
	// Recipients are the recipients in this request.
	Recipients []Recipient
}

// Recipient is one recipient of a Request.
type Recipient struct {
	// Index is the recipient's position in Envelope.Recipients; results
	// carry it back.
	Index int
	// Address is the recipient as the queue manager delivers it, in
	// internal (unquoted) form.
	Address string
	// OrigAddress is the address the client gave before any rewriting
	// (orig_to= in logs, X-Original-To:); "" when it equals Address.
	OrigAddress string
	// ORCPT and Notify are the recipient's RFC 3461 parameters, for LMTP
	// pass-through.
	ORCPT  string
	Notify uint8
}

// Result is the outcome of one recipient's delivery.
type Result struct {
	// Index is the Recipient.Index it answers.
	Index int
	// State is queue.RcptDelivered, queue.RcptBounced or
	// queue.RcptDeferred.
	State queue.RcptState
	// DSN is the RFC 3463 status ("2.0.0", "5.1.1", "4.4.1").
	DSN string
	// Reason is the text Postfix logs in status=...(REASON): "delivered
	// to maildir", "delivered via dovecot service", "host
	// h[addr] said: 550 ... (in reply to RCPT TO command)".
	Reason string
	// Relay is relay= in the log: "local", "virtual", "dovecot",
	// "h[1.2.3.4]:24", "mail.example.com[private/dovecot-lmtp]".
	Relay string
	// Replayable says that repeating this delivery has no effect (a keyed
	// Maildir file the retry finds), so its record need not be fsynced.
	Replayable bool
	// Commit, when not nil, completes the delivery and makes it durable:
	// the agent only staged the message in a Maildir's tmp/
	// (maildir.Options.Stage), so that it could answer before the
	// fsyncs, and shared them with other deliveries to the same mailbox.
	// The queue manager calls it after freeing the destination's slot
	// and before it records the result; an error defers the recipient.
	Commit func(context.Context) error
	// Done is when the agent finished with this recipient (delays=...d).
	// Zero means the queue manager's clock when it got the result.
	Done time.Time
	// Pass, when not empty, is "transport:nexthop": the agent does not
	// deliver this recipient itself but passes it on, as local(8) does
	// with mailbox_transport, mailbox_transport_maps and
	// fallback_transport (Postfix's deliver_pass). The queue manager then
	// delivers the recipient through that transport in the same run, and
	// State, DSN and Reason are ignored. Address, when set, replaces the
	// recipient's address for that delivery (local(8) passes the
	// recipient without its alias expansion changes).
	Pass    string
	Address string
	// RemoteMTA and Diagnostic are what a delivery status notification
	// says beyond the log (RFC 3464 section 2.3.5 and 2.3.6): the name of
	// the server that answered ("mx.example.com") and its reply with its
	// type ("smtp; 550 5.1.1 <a@b>: unknown"). Empty when the agent
	// decided itself; the notice then gives Reason as "X-Postfix; ...".
	RemoteMTA  string
	Diagnostic string
	// SiteFailure says the destination itself failed, not this
	// recipient: no server of the next hop could be reached (connection
	// refused or timed out, a DNS lookup that failed for now), a server
	// refused the session (4xx/5xx greeting), or the connection was lost
	// or timed out (Postfix's smtp_site_fail and smtp_sess_fail, the "hop
	// status" a delivery agent reports to qmgr(8)). The queue manager
	// lowers the destination's concurrency on it and, after
	// <transport>_destination_concurrency_failed_cohort_limit such
	// failures at concurrency 1, defers the destination's other mail
	// without trying it ("delivery temporarily suspended", qmgr(8)
	// STRATEGIES). A recipient's own 4xx or 5xx reply is not one.
	SiteFailure bool
}

// Agent is a delivery agent (one master.cf service: "local", "virtual", a
// pipe service such as "dovecot", "lmtp"). Deliver returns exactly one
// Result per request recipient, in any order, even when ctx ends (those
// then deferred). It must be safe for concurrent use: the queue manager
// runs up to the transport's process limit of requests at once.
type Agent interface {
	Deliver(ctx context.Context, req *Request) []Result
	// Close releases the agent's tables and connections.
	Close() error
}

// Verifier is an Agent that can say what it would do with a request's
// recipients without delivering anything: sendmail -bv (sendmail(1),
// ADDRESS_VERIFICATION_README), where Postfix's agents run with
// DEL_REQ_FLAG_USR_VRFY and report through the trace service instead of
// delivering. Verify returns one Result per request recipient: State
// queue.RcptDelivered is deliverable and Reason says how ("delivers to
// mailbox", "aliased to a@b"); queue.RcptBounced is undeliverable, with
// DSN and Reason as a bounce would have them; queue.RcptDeferred is "can't
// say now" (a lookup failed). Pass works as in Deliver: the queue manager
// then asks the transport it names. Request.Content may be read but the
// message it holds is only the probe sendmail -bv wrote. An agent without
// this interface is reported by the queue manager as "delivery via
// TRANSPORT" when its transport is available.
type Verifier interface {
	Verify(ctx context.Context, req *Request) []Result
}

// Deps is what an agent's constructor gets from the queue manager.
type Deps struct {
	// Config is main.cf with the master.cf row's -o overrides laid over
	// it.
	Config *config.Config
	// Service is the master.cf service name ("local", "dovecot"); Args
	// are the row's arguments after the command name (pipe's "flags=DRhu",
	// "user=vmail", "argv=/usr/lib/dovecot/deliver", "-f", "${sender}").
	Service string
	Args    []string
	// Log is tagged as the agent logs in Postfix: postfix/local,
	// postfix/virtual, postfix/pipe, postfix/lmtp (with the row's own
	// syslog_name when -o sets one).
	Log *maillog.Logger
	// Queue lets an agent submit new mail: local(8) forwarding (aliases,
	// .forward) and notices.
	Queue *queue.Queue
	// Rewrite, when not nil, rewrites a new message's envelope as cleanup
	// would (canonical maps, virtual alias expansion) before it is
	// committed; local(8)'s forwarded copies go through it.
	Rewrite func(env *queue.Envelope) error
	// Wake tells the queue manager that new mail is in incoming/.
	Wake func()
	// Self is the path of the moat binary, for agents that run a
	// short-lived child with a recipient's credentials
	// (internal/delivery/asuser).
	Self string
	// SpawnSocket, when not "", is the UNIX socket of the root executor
	// (master.cf's "local" service, asuser.Serve) that runs those children
	// for a queue manager that is not root; "" forks them here
	// (asuser.NewRunner).
	SpawnSocket string
	// ProxySocket is the proxymap service's socket when it runs.
	ProxySocket string
	// Now is the clock.
	Now func() time.Time
}

// Sysexit maps a command's exit status to a delivery outcome as Postfix's
// local(8) and pipe(8) do (sys_exits.c, <sysexits.h>): the DSN, whether it
// is temporary, and the text. Any other status is permanent, "5.3.0
// unknown mail system error N", as sys_exits_detail() and pipe_command.c
// treat it.
func Sysexit(status int) (dsn string, temporary bool, text string) {
	if status >= 64 && status <= 78 {
		e := sysexits()[status-64]
		return e.dsn, e.temp, e.text
	}
	return "5.3.0", false, "unknown mail system error " + strconv.Itoa(status)
}

type sysexit struct {
	dsn  string
	temp bool
	text string
}

// sysexits is Postfix's sys_exits table (global/sys_exits.c), from
// EX_USAGE (64) to EX_CONFIG (78).
func sysexits() [15]sysexit {
	return [15]sysexit{
		{"5.3.0", false, "command line usage error"},
		{"5.6.0", false, "data format error"},
		{"5.3.0", false, "cannot open input"},
		{"5.1.1", false, "user unknown"},
		{"5.1.2", false, "host name unknown"},
		{"5.3.0", false, "service unavailable"},
		{"5.3.0", false, "internal software error"},
		{"4.3.0", true, "system resource problem"},
		{"5.3.0", false, "critical OS file missing"},
		{"5.2.0", false, "can't create user output file"},
		{"5.3.0", false, "input/output error"},
		{"4.3.0", true, "temporary failure"},
		{"5.5.0", false, "remote error in protocol"},
		{"5.7.0", false, "permission denied"},
		{"5.3.5", false, "local configuration error"},
	}
}

// Factory adapts an agent package's New to the signature the queue manager
// registers agents with (qmgr.AgentFactory), so that a failed New gives a
// nil Agent, never a non-nil interface around a nil pointer.
func Factory[A Agent](newAgent func(Deps) (A, error)) func(Deps) (Agent, error) {
	return func(d Deps) (Agent, error) {
		a, err := newAgent(d)
		if err != nil {
			return nil, err
		}
		return a, nil
	}
}
