package smtpdcheck

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/smtp"
	"moat/internal/smtpd"
)

// QueueID is the queue ID smtpd_check logs with: there is no queue file.
const QueueID = "<queue id>"

// Options configure a Runner.
type Options struct {
	// Prog prefixes every log line, as Postfix's msg_vstream_init(argv[0])
	// does; "./smtpd_check" makes the output comparable with the .ref
	// files.
	Prog string
	// Base is the configuration the script's parameter lines override;
	// nil means config.Empty (Postfix's and moat's defaults). smtpd_check's
	// own initial settings (Defaults) are applied on top of it.
	Base *config.Config
	// Overrides are applied after Defaults and before the script's own
	// lines: a test points dns_servers at its loopback DNS server here.
	Overrides map[string]string
	// Out receives the echo, the replies and the log lines, in the order
	// Postfix's "2>&1" merge shows them.
	Out io.Writer
	// Echo prints each input line as ">>> line" first, as smtpd_check does
	// when its standard input is not a terminal.
	Echo bool
}

// Defaults are smtpd_check's initial parameter values where they differ
// from a daemon's (smtpd_check.c's TEST main(): the restriction lists,
// mynetworks and relay_domains start empty, local_recipient_maps and
// virtual_alias_maps too), and Postfix's defaults where moat chose safer
// ones that change replies (show_user_unknown_table_name).
func Defaults() map[string]string {
	return map[string]string{
		"smtpd_client_restrictions":      "",
		"smtpd_helo_restrictions":        "",
		"smtpd_sender_restrictions":      "",
		"smtpd_relay_restrictions":       "",
		"smtpd_recipient_restrictions":   "",
		"smtpd_etrn_restrictions":        "",
		"smtpd_data_restrictions":        "",
		"smtpd_end_of_data_restrictions": "",
		"smtpd_restriction_classes":      "",
		"mynetworks":                     "",
		"relay_domains":                  "",
		"local_recipient_maps":           "",
		"virtual_alias_maps":             "",
		"alias_maps":                     "",
		"show_user_unknown_table_name":   "yes",
		"smtpd_delay_reject":             "yes",
		"smtpd_reject_unlisted_sender":   "no",
	}
}

// client is the SMTP client a script pretends to be.
type client struct {
	name   string
	addr   netip.Addr
	status int
}

// Runner executes script lines one at a time against moat's restriction
// code, keeping smtpd_check's state between them: the client (initially
// localhost[127.0.0.1]), the HELO name and sender once given, the parameter
// settings, and the TLS fingerprint.
type Runner struct {
	o         Options
	base      *config.Config
	overrides map[string]string
	classes   []string

	log  *maillog.Logger
	sink *scriptSink

	eval *evaluator // nil until built; rebuilt after a parameter change

	client    client
	helo      string
	hasHelo   bool
	sender    string
	hasSender bool
	// fingerprint stands for a TLS client certificate's (and its public
	// key's) fingerprint: smtpd_check's "fingerprint" command.
	fingerprint string
}

// New makes a Runner. Close it when done.
func New(o Options) *Runner {
	if o.Prog == "" {
		o.Prog = "./smtpd_check"
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	base := o.Base
	if base == nil {
		base = config.Empty("")
	}
	ov := Defaults()
	for k, v := range o.Overrides {
		ov[k] = v
	}
	sink := &scriptSink{w: o.Out, prog: o.Prog}
	r := &Runner{
		o:         o,
		base:      base,
		overrides: ov,
		sink:      sink,
		log:       maillog.New(maillog.Options{Sink: sink, Fallback: sink, SyslogName: "postfix", Daemon: "smtpd", UTF8: true}),
		client:    client{name: "localhost", addr: netip.AddrFrom4([4]byte{127, 0, 0, 1}), status: 2},
	}
	return r
}

// Close releases the tables and DNS resources of the current settings and
// stops the logger.
func (r *Runner) Close() error {
	var err error
	if r.eval != nil {
		err = r.eval.close()
		r.eval = nil
	}
	if e := r.log.Close(context.Background()); err == nil {
		err = e
	}
	return err
}

// Run executes every line of in.
func (r *Runner) Run(ctx context.Context, in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		r.Exec(ctx, sc.Text())
	}
	return sc.Err()
}

// Exec executes one script line and prints what smtpd_check would.
func (r *Runner) Exec(ctx context.Context, line string) {
	if r.o.Echo {
		fmt.Fprintf(r.o.Out, ">>> %s\n", line)
	}
	cmd := Parse(line)
	resp := r.exec(ctx, cmd)
	// The log lines go first: Postfix writes them to an unbuffered
	// stderr before it flushes the reply to stdout.
	if err := r.log.Flush(ctx); err != nil {
		fmt.Fprintf(r.o.Out, "%s: warning: log flush: %v\n", r.o.Prog, err)
	}
	if cmd.Kind == Empty || cmd.Kind == Comment {
		return
	}
	fmt.Fprintln(r.o.Out, resp)
}

// exec carries out one command and returns the line to print.
func (r *Runner) exec(ctx context.Context, c Command) string {
	switch c.Kind {
	case Empty, Comment:
		return ""
	case Shell:
		return "bad command: smtpd-check does not run shell commands"
	case Client:
		a, err := netip.ParseAddr(strings.TrimPrefix(strings.ToLower(c.Value), "ipv6:"))
		if err != nil {
			return "bad command: bad client address " + c.Value
		}
		r.client = client{name: c.Name, addr: a.Unmap(), status: c.Status}
		return r.check(ctx, smtpd.StageConnect, "")
	case Helo:
		r.helo, r.hasHelo = c.Name, true
		return r.check(ctx, smtpd.StageHelo, "")
	case Mail:
		r.sender, r.hasSender = c.Name, true
		return r.check(ctx, smtpd.StageMail, "")
	case Rcpt:
		return r.check(ctx, smtpd.StageRcpt, c.Name)
	case Etrn:
		return r.check(ctx, smtpd.StageEtrn, c.Name)
	case Restrictions:
		return r.set(c.Name, c.Value)
	case Class:
		return r.setClass(c.Name, c.Value)
	case Param:
		return r.set(c.Name, c.Value)
	case Fingerprint:
		// smtpd_check fakes a TLS session whose trusted client
		// certificate has this fingerprint.
		r.fingerprint = c.Name
		return "OK"
	case FlushDNS:
		if r.eval != nil {
			r.eval.flushDNS()
		}
		return "OK"
	case Rewrite:
		// smtpd_check_rewrite() (local_header_rewrite_clients) belongs
		// to the cleanup side of moat's smtpd, not to the restriction
		// lists; it is not driven from here.
		return "bad command: rewrite is not supported by smtpd-check"
	}
	return "bad command"
}

// set applies a parameter line. Only parameters moat knows are accepted;
// Postfix's smtpd_check answers "bad command" for names outside its tables.
// smtpd_check reads numbers with atoi() even for yes/no parameters
// (smtpd_delay_reject 0), so digits given to a boolean become yes or no.
func (r *Runner) set(name, value string) string {
	p, ok := r.base.Table().Lookup(name)
	if !ok {
		return "bad command"
	}
	if p.Type == config.TypeBool && value != "" && strings.Trim(value, "0123456789") == "" {
		if strings.Trim(value, "0") == "" {
			value = "no"
		} else {
			value = "yes"
		}
	}
	if err := r.base.CheckOverride(name, value); err != nil {
		// moat refuses such a setting at start-up; the script goes on
		// with the previous value, and says so.
		r.log.Warning("%s = %s not applied: %v", name, value, err)
		return "OK"
	}
	r.overrides[name] = value
	r.invalidate()
	return "OK"
}

// setClass defines a restriction class: its name joins
// smtpd_restriction_classes (once) and the list becomes its value.
func (r *Runner) setClass(name, list string) string {
	found := false
	for _, c := range r.classes {
		found = found || c == name
	}
	if !found {
		r.classes = append(r.classes, name)
	}
	r.overrides["smtpd_restriction_classes"] = strings.Join(r.classes, ", ")
	r.overrides[name] = list
	r.invalidate()
	return "OK"
}

// invalidate drops the built restriction lists, as a reload would.
func (r *Runner) invalidate() {
	if r.eval != nil {
		if err := r.eval.close(); err != nil {
			r.log.Warning("closing tables: %v", err)
		}
		r.eval = nil
	}
}

// cfg is the base configuration with smtpd_check's and the script's
// settings.
func (r *Runner) cfg() *config.Config {
	return r.base.WithOverrides(r.overrides)
}

// view is the smtpd.View of the script's session for one stage; arg is the
// recipient (StageRcpt) or the ETRN domain (StageEtrn).
func (r *Runner) view(st smtpd.Stage, arg string) *smtpd.View {
	name := r.client.name
	v := &smtpd.View{
		Service:           "smtpd",
		ClientName:        name,
		ReverseClientName: name,
		ClientNameStatus:  r.client.status,
		ReverseNameStatus: r.client.status,
		ClientAddr:        r.client.addr,
		Helo:              r.helo,
		Protocol:          "SMTP",
		Sender:            r.sender,
		HasSender:         r.hasSender,
		Size:              -1,
		QueueID:           QueueID,
	}
	switch st {
	case smtpd.StageEtrn:
		v.EtrnDomain = arg
	default:
		v.Recipient = arg
	}
	return v
}

// envelope is what the log records append about the transaction.
func (r *Runner) envelope(rcpt string, hasRcpt bool) maillog.Envelope {
	env := maillog.Envelope{Sender: r.sender, HasSender: r.hasSender, Proto: "SMTP"}
	if r.hasHelo {
		env.Helo = r.helo
	}
	if hasRcpt {
		env.Recipient, env.HasRecipient = rcpt, true
	}
	return env
}

func (r *Runner) logClient() maillog.Client {
	return maillog.Client{Name: r.client.name, Addr: r.client.addr}
}

// replyConfigError is smtpd's answer when a restriction cannot be
// evaluated (smtpd.Policy).
func replyConfigError() smtp.Reply {
	return smtp.NewReply(451, "4.3.5", "Server configuration error")
}

// check runs the restrictions of one command as Postfix's smtpd_check
// does: the command's own list at once, whatever smtpd_delay_reject says
// (the TEST main() calls smtpd_check_client() and the others directly), and
// at RCPT with smtpd_delay_reject the client, HELO and sender lists again
// before the recipient's (smtpd_check_rcpt(); restrict's Session does that
// part). The record names the command being answered.
func (r *Runner) check(ctx context.Context, st smtpd.Stage, arg string) string {
	state := st.String()
	env := r.envelope(arg, st == smtpd.StageRcpt)
	ev, err := r.evaluator()
	if err != nil {
		// A daemon would not start with these settings; the script
		// gets smtpd's answer to a restriction it cannot evaluate.
		r.log.Warning("%v", err)
		return r.reject(state, replyConfigError(), env)
	}
	d, err := ev.check(ctx, st, r.view(st, arg), r.fingerprint)
	if err != nil {
		r.log.Warning("%s restriction failed: %v", st, err)
		return r.reject(state, replyConfigError(), env)
	}
	if d.Refuses() {
		return r.reject(state, d.Reply, env)
	}
	return "OK"
}

// reject logs Postfix's reject record and returns the reply line.
func (r *Runner) reject(state string, reply smtp.Reply, env maillog.Envelope) string {
	r.log.Info("%s", maillog.Reject(QueueID, state, r.logClient(), reply.String(), env))
	return reply.String()
}

// evaluator builds the restriction lists for the current settings, once.
func (r *Runner) evaluator() (*evaluator, error) {
	if r.eval != nil {
		return r.eval, nil
	}
	ev, err := newEvaluator(r.cfg(), r.log)
	if err != nil {
		return nil, err
	}
	r.eval = ev
	return ev, nil
}

// scriptSink prints log records the way smtpd_check's msg_vstream does:
// "PROG: [severity: ]text".
type scriptSink struct {
	w    io.Writer
	prog string
}

func (s *scriptSink) Write(rec *maillog.Record) error {
	sev := ""
	if rec.Severity != maillog.Info {
		sev = rec.Severity.String() + ": "
	}
	_, err := fmt.Fprintf(s.w, "%s: %s%s\n", s.prog, sev, rec.Text)
	return err
}

func (s *scriptSink) Reopen() error { return nil }
func (s *scriptSink) Close() error  { return nil }
