package qmgr

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"moat/internal/delivery"
	"moat/internal/maillog"
	"moat/internal/queue"
	"moat/internal/resolve"
)

// verdict is one recipient's answer to a sendmail -bv request.
type verdict struct {
	index int
	res   result
}

// verify answers a sendmail -bv request (queue.FlagVerify) instead of
// delivering it: every unsettled recipient is routed as for delivery and
// its transport is asked what it would do (delivery.Verifier), each
// answer is logged as Postfix's agents log a user-requested verification
// (trace.c's trace_append: "status=deliverable (delivers to mailbox)",
// "status=undeliverable (...)"), one report goes to the sender (bounce(8)'s
// verify_template, "Mail Delivery Status Report"), and the message is
// removed. Nothing is delivered, and nothing is retried: a recipient the
// transport cannot judge now is reported undeliverable with its 4.X.X
// reason, as Postfix's defer_append reports it under DEL_REQ_FLAG_USR_VRFY.
// Only when the report cannot be queued does the request wait in
// deferred/ and run again.
func (m *Manager) verify(ctx context.Context, msg *queue.Message, pending []int, active time.Time) {
	id := msg.ID
	env := &msg.Envelope
	var out []verdict
	for _, i := range pending {
		if ctx.Err() != nil {
			m.moveOrWarn(id, queue.Active, queue.Incoming)
			return
		}
		r := m.verifyRecipient(ctx, msg, i, env.Recipients[i].Address, 0)
		if ctx.Err() != nil {
			// The agent may have answered "deferred" only because it
			// was interrupted: ask again at the next start.
			m.moveOrWarn(id, queue.Active, queue.Incoming)
			return
		}
		m.logVerdict(id, env, i, r, active)
		out = append(out, verdict{index: i, res: r})
	}
	if err := m.queueReport(msg, out); err != nil {
		m.log.Warning("%s: sender delivery status notification: %v", id, err)
		m.backoff(id, env.Arrival)
		m.moveOrWarn(id, queue.Active, queue.Deferred)
		return
	}
	if err := m.q.Remove(queue.Active, id); err != nil {
		m.log.Warning("%s: %v", id, err)
		m.moveOrWarn(id, queue.Active, queue.Deferred)
		return
	}
	m.log.Info("%s", maillog.Removed(id))
}

// verifyRoute routes a recipient of a verification request. A content
// filter is skipped, as Postfix's qmgr skips it for trace-only requests
// (the filter would receive the probe, not judge the address); an
// "error:" filter, which moat's cleanup sets for mail that header_checks
// rejected, is kept: that message would bounce.
func (m *Manager) verifyRoute(env *queue.Envelope, addr string) (route, error) {
	if env.Filter == "" || strings.HasPrefix(env.Filter, "error:") {
		return m.router.route(env, addr)
	}
	e := *env
	e.Filter = ""
	return m.router.route(&e, addr)
}

// verifyRecipient asks recipient i's transport what it would do with
// addr; passes counts the pass-ons (mailbox_transport, fallback_transport)
// followed so far, bounded as for delivery.
func (m *Manager) verifyRecipient(ctx context.Context, msg *queue.Message, i int, addr string, passes int) result {
	env := &msg.Envelope
	rt, err := m.verifyRoute(env, addr)
	if err != nil {
		return m.routeFailure(msg.ID, addr, err)
	}
	return m.verifyVia(ctx, msg, i, addr, rt, passes)
}

// verifyVia asks the transport of route rt about recipient i.
func (m *Manager) verifyVia(ctx context.Context, msg *queue.Message, i int, addr string, rt route, passes int) result {
	t := m.transports[rt.transport]
	if t == nil {
		return m.qmgrResult(queue.RcptDeferred, "4.3.0", "mail transport unavailable")
	}
	t.ready()
	switch {
	case t.unavailable != "":
		return m.qmgrResult(queue.RcptDeferred, "4.3.0", t.unavailable)
	case t.command == "discard":
		return m.discard(rt, t.log)
	case t.command == "error":
		return m.errorAgent(rt, t.log)
	case t.command == "retry":
		return m.retryAgent(rt, t.log)
	}
	v, ok := t.agent.(delivery.Verifier)
	if !ok {
		// The agent cannot judge addresses without delivering (pipe,
		// lmtp): the transport exists and is available, which is as far
		// as the queue manager can see.
		now := m.now()
		return result{state: queue.RcptDelivered, dsn: "2.0.0", reason: "delivery via " + t.name,
			relay: "none", handoff: now, done: now, log: t.log}
	}
	r := requestRecipient(msg, i, addr)
	req := &delivery.Request{QueueID: msg.ID, Envelope: &msg.Envelope, Content: msg.Content,
		Nexthop: rt.nexthop, Recipients: []delivery.Recipient{r}}
	handoff := m.now()
	for _, a := range v.Verify(ctx, req) {
		if a.Index != i {
			m.log.Warning("%s: transport %s answered for recipient %d it was not given", msg.ID, t.name, a.Index)
			continue
		}
		if a.Pass != "" {
			if passes >= maxPasses {
				return m.qmgrResult(queue.RcptDeferred, "4.3.0", "mail transport loop: "+rt.transport+" passes to "+a.Pass)
			}
			next := addr
			if a.Address != "" {
				next = a.Address
			}
			_, domain := splitAddress(next)
			return m.verifyVia(ctx, msg, i, next, parseTransport(a.Pass, domain), passes+1)
		}
		done := a.Done
		if done.IsZero() {
			done = m.now()
		}
		return result{state: a.State, dsn: a.DSN, reason: a.Reason, relay: a.Relay,
			handoff: handoff, done: done, log: t.log}
	}
	m.log.Warning("%s: transport %s gave no verification result for <%s>", msg.ID, t.name, addr)
	return m.qmgrResult(queue.RcptDeferred, "4.3.0", "delivery agent gave no result")
}

// requestRecipient is recipient i of msg as a request recipient, with addr as the
// address to verify.
func requestRecipient(msg *queue.Message, i int, addr string) delivery.Recipient {
	r := msg.Envelope.Recipients[i]
	orig := r.Orig
	if addr != r.Address && orig == "" {
		orig = r.Address
	}
	return delivery.Recipient{Index: i, Address: addr, OrigAddress: orig, ORCPT: r.ORCPT, Notify: uint8(r.Notify)}
}

// verdictStatus is the word Postfix logs for a user-requested
// verification: "deliverable" for what would be delivered, "undeliverable"
// for what would bounce or be deferred (bounce.c, defer.c and sent.c set
// my_dsn.action so under DEL_REQ_FLAG_USR_VRFY).
func verdictStatus(r result) string {
	if r.state == queue.RcptDelivered {
		return "deliverable"
	}
	return "undeliverable"
}

// logVerdict logs one answer as log_adhoc does for trace_append, tagged
// with the daemon that gave it.
func (m *Manager) logVerdict(id string, env *queue.Envelope, i int, r result, active time.Time) {
	m.logStatus(id, env, i, r, active, verdictStatus(r))
}

// traced is r as bounce(8) reads it back from the trace log: trace_append
// puts "delivery via RELAY: " before the reason unless the relay is
// "none", so both the report's text ("<rcpt>: delivery via local: ...")
// and its Diagnostic-Code carry it.
func traced(r result) result {
	if r.relay != "" && r.relay != "none" {
		r.reason = "delivery via " + r.relay + ": " + r.reason
	}
	return r
}

// queueReport commits the delivery status report to the sender into
// incoming/, as bounce(8)'s trace service sends it
// (bounce_trace_service.c): an RFC 3464 report (buildDSN, dsnVerify) with
// verify_template's text, one record per recipient in the envelope's
// order whatever its NOTIFY (DSN_NOTIFY_OVERRIDE), Action: deliverable or
// undeliverable, and the message's header only (DSN_RET_HDRS), from the
// null sender so that it can never bounce in turn (RFC 5321 section
// 4.5.5). A null sender gets none (nothing to send it to). Unlike
// Postfix, which reports to any sender, only a sender in a local domain
// gets one: a -bv request is a local submission, and a remote envelope
// sender on it is someone else's address.
func (m *Manager) queueReport(msg *queue.Message, out []verdict) error {
	env := &msg.Envelope
	if env.Sender == "" || len(out) == 0 {
		return nil
	}
	_, domain := splitAddress(env.Sender)
	class, err := m.classify(domain)
	if err != nil {
		return fmt.Errorf("resolving <%s>: %w", env.Sender, err)
	}
	if class != resolve.Local {
		m.log.Info("%s: no delivery status report for <%s>: not a local sender", msg.ID, env.Sender)
		return nil
	}
	items := make([]bounceItem, 0, len(out))
	for _, v := range out {
		items = append(items, bounceItem{index: v.index, res: traced(v.res)})
	}
	slices.SortStableFunc(items, func(a, b bounceItem) int { return a.index - b.index })
	n := dsnNotice{kind: dsnVerify, to: env.Sender, headersOnly: true}
	content, err := m.buildDSN(msg.ID, env, msg.Content(), items, n, nil)
	if err != nil {
		return err
	}
	return m.commitNotice(msg.ID, "", env.Sender, "sender delivery status notification", content)
}
