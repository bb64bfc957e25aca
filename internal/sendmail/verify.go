package sendmail

import (
	"strings"

	"moat/internal/maildrop"
	"moat/internal/postdrop"
)

// verify is -bv (sendmail(1): "Do not collect or deliver a message.
// Instead, send an email report after verifying each recipient
// address"). Standard input is not read; the message is the stub Postfix's
// sendmail writes in its place (enqueue() in sendmail.c: From: the
// sender unless it is null, "Subject: probe", To: the command line's
// recipients), and the envelope's verify field tells the queue manager to
// report rather than deliver. It goes through postdrop like any
// submission, so the same access checks apply.
func (r *run) verify(rcpts []string) int {
	if r.opts.extract {
		return r.fatal(postdrop.ExUsage, "%s: -t option cannot be used with -bv", r.sub.Name())
	}
	env, err := r.envelope(rcpts)
	if err != nil {
		return r.fatal(postdrop.Status(err), "%v", err)
	}
	env.Verify = true
	s, err := r.open()
	if err != nil {
		return r.fatal(postdrop.Status(err), "%v", err)
	}
	mw, err := maildrop.NewWriter(s.w, env, 0)
	if err == nil {
		_, err = mw.Write([]byte(probe(env.Sender, r.opts.recipients)))
	}
	if err == nil {
		err = mw.Close()
	}
	s.w.Close()
	if status := r.finish(s); status != 0 || err == nil {
		return status
	}
	return r.readFailed(err)
}

// probe is the message of a -bv submission: Postfix's header lines, the
// To: folded one recipient per line as the command line gave them. A
// command-line argument cannot add a header line: control characters
// become spaces.
func probe(sender string, args []string) string {
	var b strings.Builder
	if sender != "" {
		b.WriteString("From: " + printable(sender) + "\r\n")
	}
	b.WriteString("Subject: probe\r\n")
	for i, a := range args {
		if i == 0 {
			b.WriteString("To:")
		}
		b.WriteString("\t" + printable(a))
		if i+1 < len(args) {
			b.WriteString(",")
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

func printable(s string) string {
	return strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return ' '
		}
		return c
	}, s)
}
