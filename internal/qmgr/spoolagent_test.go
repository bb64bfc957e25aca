package qmgr

import (
	"cmp"
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"

	"moat/internal/delivery"
	"moat/internal/delivery/maildir"
	"moat/internal/queue"
)

// spoolAgent is the "local" agent of this package's tests: a Maildir per
// user under mail_spool_directory, keyed as the real local(8) agent keys
// them, with mailbox_size_limit. The scheduler's tests need a real
// mailbox writer, not the whole of local(8) (aliases, passwd accounts,
// credentialed children), which internal/delivery/local tests itself.
type spoolAgent struct {
	spool, delimiters string
	sizeLimit         int64
}

func newSpoolAgent(d delivery.Deps) (delivery.Agent, error) {
	limit, err := d.Config.Size("mailbox_size_limit")
	if err != nil {
		return nil, err
	}
	return &spoolAgent{spool: d.Config.Get("mail_spool_directory"),
		delimiters: d.Config.Get("recipient_delimiter"), sizeLimit: limit}, nil
}

func (a *spoolAgent) Close() error { return nil }

func (a *spoolAgent) Deliver(ctx context.Context, req *delivery.Request) []delivery.Result {
	var out []delivery.Result
	for _, r := range req.Recipients {
		res := delivery.Result{Index: r.Index, Relay: "local"}
		localPart, _, _ := strings.Cut(r.Address, "@")
		user := strings.ToLower(localPart)
		if i := strings.IndexAny(user, a.delimiters); a.delimiters != "" && i >= 0 {
			user = user[:i]
		}
		if !safeTestUser(user) {
			res.State, res.DSN, res.Reason = queue.RcptBounced, "5.1.1", `unknown user: "`+user+`"`
			out = append(out, res)
			continue
		}
		_, err := maildir.Deliver(filepath.Join(a.spool, user), req.Content(), maildir.Options{
			ReturnPath: true, Sender: req.Envelope.Sender, Recipient: strings.ToLower(r.Address),
			OrigRecipient: cmp.Or(r.OrigAddress, r.Address),
			SizeLimit:     a.sizeLimit, Key: req.QueueID + "." + strconv.Itoa(r.Index),
			Arrival: req.Envelope.Arrival,
		})
		var me *delivery.Error
		switch {
		case err == nil:
			res.State, res.DSN, res.Reason, res.Replayable = queue.RcptDelivered, "2.0.0", "delivered to maildir", true
		case errors.As(err, &me):
			res.State, res.DSN, res.Reason = queue.RcptBounced, me.DSN, me.Text
			if me.Temporary() {
				res.State = queue.RcptDeferred
			}
		default:
			res.State, res.DSN, res.Reason = queue.RcptDeferred, "4.3.0", err.Error()
		}
		out = append(out, res)
	}
	return out
}

// safeTestUser keeps a test recipient to plain names: nothing that could
// name a directory outside the spool.
func safeTestUser(user string) bool {
	return user != "" && user[0] != '-' && user[0] != '.' &&
		strings.Trim(user, "abcdefghijklmnopqrstuvwxyz0123456789._-") == ""
}

// testAgents are the agents a test manager gets unless it brings its own.
func testAgents(extra map[string]AgentFactory) map[string]AgentFactory {
	out := map[string]AgentFactory{"local": newSpoolAgent}
	for k, v := range extra {
		out[k] = v
	}
	return out
}
