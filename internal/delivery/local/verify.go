package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
// delivery's order (alias_maps with and without the extension, the
// passwd user's .forward, mailbox_transport_maps, mailbox_transport, the
// user's
// mailbox_command_maps, mailbox_command, home_mailbox or the mail spool,
// then fallback_transport_maps, fallback_transport, luser_relay, else
// "unknown user") with the agent's own tables, read-only; the .forward
// file is read as delivery reads it, with the user's rights.
//
// Difference from Postfix's trace-only local(8): an alias is reported as
// "aliased to TARGETS" (the wording local(8) uses for MTA-requested
// probes), and a .forward file as "forwards to TARGETS", instead of one
// record per expanded target ("delivers to mailbox", "forwards to X",
// "delivers to command: C"): moat's expansion is built into delivery
// (deliver.go, forward.go) with no side-effect-free mode to call, and
// the queue manager's contract has one Result per recipient.
func (a *Agent) Verify(ctx context.Context, req *delivery.Request) []delivery.Result {
	out := make([]delivery.Result, 0, len(req.Recipients))
	for _, rcpt := range req.Recipients {
		var r delivery.Result
		if ctx.Err() != nil {
			r = delivery.Result{State: queue.RcptDeferred, DSN: "4.3.0",
				Reason: "delivery interrupted: " + ctx.Err().Error()}
		} else {
			r = a.verifyRecipient(ctx, req, rcpt)
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
func (a *Agent) verifyRecipient(ctx context.Context, req *delivery.Request, rcpt delivery.Recipient) delivery.Result {
	set := a.set
	addr, noAlias := strings.CutPrefix(rcpt.Address, `\`)
	st := attrs{rcpt: rcpt.Address, sender: req.Envelope.Sender}
	st.local, st.domain, st.user, st.ext, st.delim = splitRecipient(addr, set.delimiters, set.ownerSpec)
	if st.user == "" {
		return undeliverable("5.1.3", `null username in "`+rcpt.Address+`"`)
	}
	j := &job{a: a, ctx: ctx, req: req, rcpt: rcpt}
	if !noAlias {
		names := []string{st.local}
		if st.ext != "" {
			names = append(names, st.user)
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
	acct, err := a.set.users.lookupUser(st.user)
	if err != nil {
		return undeliverable("4.3.0", err.Error())
	}
	if acct != nil && !noAlias {
		if _, err := os.Stat(acct.home); err != nil && a.set.requireHome {
			return undeliverable("4.3.0", "cannot access home directory "+acct.home+": "+delivery.Strerror(err))
		}
		if r, ok := a.verifyForward(j, st, acct); ok {
			return r
		}
	}
	pass := func(transport string) delivery.Result {
		if !strings.Contains(transport, ":") {
			transport += ":" + st.domain
		}
		return delivery.Result{Pass: transport}
	}
	if tr, found, err := lookupFirst(set.mailboxTransportMaps, st.user); err != nil {
		return undeliverable("4.3.0", "mailbox_transport_maps lookup failure")
	} else if found {
		return pass(tr)
	}
	if set.mailboxTransport != "" {
		return pass(set.mailboxTransport)
	}
	if acct == nil {
		return a.verifyUnknown(j, st, pass)
	}
	if acct.uid == 0 {
		return undeliverable("4.3.0", "mailbox delivery for uid 0 is not allowed; alias "+st.user+" to another user")
	}
	cmd, found, err := lookupFirst(set.mailboxCommandMaps, st.user)
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
	case strings.ContainsAny(st.user, "/") || st.user == "." || st.user == "..":
		return undeliverable("5.1.1", `unknown user: "`+st.user+`"`)
	case strings.HasSuffix(set.spoolDir, "/"):
		return deliverable("delivers to maildir")
	}
	return deliverable("delivers to mailbox")
}

// verifyForward is deliver_dotforward() without its actions: the first
// forward_path file that exists and is safe (read as delivery reads it,
// with the user's rights) settles the recipient, reported with its
// targets. An empty file means "do not forward" (ok false).
func (a *Agent) verifyForward(j *job, st attrs, acct *account) (delivery.Result, bool) {
	set := a.set
	m := j.macros(st, acct)
	for _, tmpl := range set.forwardPath {
		path, stat := expandLocal(tmpl, m, set.fwdFilter)
		if stat&config.StatError != 0 || path == "" || !filepath.IsAbs(path) {
			continue
		}
		data, err := j.readOwnedFile(path, acct)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			a.warn("%v", err)
			continue
		}
		targets := parseForward(data, set.lineLimit)
		if len(targets) == 0 {
			return delivery.Result{}, false
		}
		return deliverable("forwards to " + strings.Join(targets, ", ")), true
	}
	return delivery.Result{}, false
}

// verifyUnknown is deliver_unknown() without its actions: the fallback
// transports pass the recipient on, luser_relay forwards it.
func (a *Agent) verifyUnknown(j *job, st attrs, pass func(string) delivery.Result) delivery.Result {
	set := a.set
	if tr, found, err := lookupFirst(set.fallbackMaps, st.user); err != nil {
		return undeliverable("4.3.0", "fallback_transport_maps lookup failure")
	} else if found {
		return pass(tr)
	}
	if set.fallbackTransport != "" {
		return pass(set.fallbackTransport)
	}
	if set.luserRelay != "" {
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
	return undeliverable("5.1.1", `unknown user: "`+st.user+`"`)
}

// warn logs through the agent's logger, when it has one.
func (a *Agent) warn(format string, args ...any) {
	if a.d.Log != nil {
		a.d.Log.Warning(format, args...)
	}
}
