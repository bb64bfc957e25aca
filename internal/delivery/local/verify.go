package local

import (
	"context"
	"strings"

	"moat/internal/aliases"
	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/queue"
)

// Verify is local(8) under sendmail -bv (delivery.Verifier): for each
// recipient it says what delivery would do, with local(8)'s trace-only
// texts ("delivers to mailbox", "delivers to maildir", "delivers to
// command: CMD", mailbox.c, maildir.c and command.c under
// DEL_REQ_TRACE_ONLY), and writes, runs and submits nothing. It follows
// delivery's order (alias_maps with and without the extension,
// mailbox_transport_maps, mailbox_transport, the passwd user's
// mailbox_command_maps, mailbox_command, home_mailbox or the mail spool,
// then fallback_transport_maps, fallback_transport, luser_relay, else
// "unknown user") with the agent's own tables, read-only.
//
// Differences from Postfix's trace-only local(8): an alias is reported
// as "aliased to TARGETS" (the wording local(8) uses for MTA-requested
// probes) instead of being expanded to one record per target, and a
// user's .forward file is not read (the mailbox is reported): moat's
// .forward reading and alias expansion are built into delivery
// (deliver.go, forward.go), with no side-effect-free mode to call.
func (a *Agent) Verify(ctx context.Context, req *delivery.Request) []delivery.Result {
	out := make([]delivery.Result, 0, len(req.Recipients))
	for _, rcpt := range req.Recipients {
		var r delivery.Result
		if ctx.Err() != nil {
			r = delivery.Result{State: queue.RcptDeferred, DSN: "4.3.0",
				Reason: "delivery interrupted: " + ctx.Err().Error()}
		} else {
			r = a.verifyRecipient(req, rcpt)
		}
		r.Index = rcpt.Index
		if r.Pass == "" {
			r.Relay = Relay
		}
		r.Done = a.d.Now()
		out = append(out, r)
	}
	return out
}

func deliverable(reason string) delivery.Result {
	return delivery.Result{State: queue.RcptDelivered, DSN: "2.0.0", Reason: reason}
}

func undeliverable(dsn, reason string) delivery.Result {
	state := queue.RcptBounced
	if strings.HasPrefix(dsn, "4") {
		state = queue.RcptDeferred
	}
	return delivery.Result{State: state, DSN: dsn, Reason: reason}
}

// verifyRecipient is deliverSwitch without its actions.
func (a *Agent) verifyRecipient(req *delivery.Request, rcpt delivery.Recipient) delivery.Result {
	set := a.set
	addr, noAlias := strings.CutPrefix(rcpt.Address, `\`)
	local, domain, user, ext, delim := splitRecipient(addr, set.delimiters, set.ownerSpec)
	if user == "" {
		return undeliverable("5.1.3", `null username in "`+rcpt.Address+`"`)
	}
	if !noAlias {
		names := []string{local}
		if ext != "" {
			names = append(names, user)
		}
		for _, name := range names {
			value, found, err := lookupFirst(set.aliasMaps, name)
			if err != nil {
				a.warn("table lookup problem for %s: %v", name, err)
				return undeliverable("4.3.0", "alias database unavailable")
			}
			if found {
				targets := aliases.Targets(value)
				if len(targets) == 0 {
					return undeliverable("4.3.0", "alias database unavailable")
				}
				return deliverable("aliased to " + strings.Join(targets, ", "))
			}
		}
	}
	pass := func(transport string) delivery.Result {
		if !strings.Contains(transport, ":") {
			transport += ":" + domain
		}
		return delivery.Result{Pass: transport}
	}
	if tr, found, err := lookupFirst(set.mailboxTransportMaps, user); err != nil {
		return undeliverable("4.3.0", "mailbox_transport_maps lookup failure")
	} else if found {
		return pass(tr)
	}
	if set.mailboxTransport != "" {
		return pass(set.mailboxTransport)
	}
	acct, err := lookupUser(user)
	if err != nil {
		return undeliverable("4.3.0", err.Error())
	}
	if acct == nil {
		return a.verifyUnknown(req, rcpt, local, domain, user, ext, delim, pass)
	}
	if acct.uid == 0 {
		return undeliverable("4.3.0", "mailbox delivery for uid 0 is not allowed; alias "+user+" to another user")
	}
	cmd, found, err := lookupFirst(set.mailboxCommandMaps, user)
	if err != nil {
		return undeliverable("4.3.0", "mailbox_command_maps lookup failure")
	}
	if !found {
		cmd = set.mailboxCommand
	}
	switch {
	case cmd != "":
		return deliverable("delivers to command: " + cmd)
	case set.homeMailbox != "":
		if strings.HasSuffix(set.homeMailbox, "/") {
			return deliverable("delivers to maildir")
		}
		return deliverable("delivers to mailbox")
	case strings.ContainsAny(user, "/") || user == "." || user == "..":
		return undeliverable("5.1.1", `unknown user: "`+user+`"`)
	case strings.HasSuffix(set.spoolDir, "/"):
		return deliverable("delivers to maildir")
	}
	return deliverable("delivers to mailbox")
}

// verifyUnknown is deliver_unknown() without its actions: the fallback
// transports pass the recipient on, luser_relay forwards it.
func (a *Agent) verifyUnknown(req *delivery.Request, rcpt delivery.Recipient, local, domain, user, ext, delim string, pass func(string) delivery.Result) delivery.Result {
	set := a.set
	if tr, found, err := lookupFirst(set.fallbackMaps, user); err != nil {
		return undeliverable("4.3.0", "fallback_transport_maps lookup failure")
	} else if found {
		return pass(tr)
	}
	if set.fallbackTransport != "" {
		return pass(set.fallbackTransport)
	}
	if set.luserRelay != "" {
		j := &job{a: a, req: req, rcpt: rcpt}
		st := attrs{rcpt: rcpt.Address, local: local, domain: domain, user: user, ext: ext, delim: delim}
		dest, stat := expandLocal(set.luserRelay, j.macros(st, nil), "")
		if stat&config.StatError == 0 && strings.TrimSpace(dest) != "" {
			var to []string
			for _, t := range splitTargets(dest) {
				to = append(to, internalize(t))
			}
			// local(8)'s deliver_indirect under trace-only.
			return deliverable("forwards to " + strings.Join(to, ", "))
		}
	}
	return undeliverable("5.1.1", `unknown user: "`+user+`"`)
}

// warn logs through the agent's logger, when it has one.
func (a *Agent) warn(format string, args ...any) {
	if a.d.Log != nil {
		a.d.Log.Warning(format, args...)
	}
}
