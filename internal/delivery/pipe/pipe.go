// Package pipe is moat's pipe(8) delivery agent: it hands a message to an
// external command named in a master.cf row ("maildrop unix - n n - - pipe
// flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}"), run
// with the row's user= identity, and turns the command's exit status into a
// per-recipient result the way Postfix's pipe(8) and pipe_command() do.
//
// # The command's environment
//
// As in pipe(8), the command gets only the variables export_environment
// names (postconf(5); by default TZ, MAIL_CONFIG and LANG, taken from the
// agent's own environment, or name=value as written there) and
// PATH=/usr/bin:/bin. MAIL_CONFIG, when exported but not set in the
// agent's environment, is the configuration directory, as postfix(1) sets
// it for Postfix's daemons. A content filter that re-injects mail
// ("pipefilter:dummy" in content_filter, postconf(5)) must therefore call
// sendmail by its full path, /usr/sbin/sendmail, which then reads the same
// configuration through MAIL_CONFIG; to search another PATH, write
// "PATH=/usr/sbin:/usr/bin:/bin" in export_environment (pipe(8) itself
// always overrides PATH; moat honours an explicit PATH=).
//
// # Differences from Postfix
//
// A bad row is refused when the agent is set up (New), with the service and
// the attribute named, where pipe(8) fails only at the first delivery;
// chroot= is refused; directory= must be absolute; the default working
// directory is / rather than queue_directory; a $ that starts no macro, and
// ${name?text} forms, are refused at set-up. A time limit defers (4.3.0)
// where pipe_command() bounces (5.3.0): a hung filter or a slow mailbox is
// not the message's fault, and maximal_queue_lifetime still ends it.
// ${client_port}, ${sasl_method} and ${sasl_sender} expand to nothing: the
// queue file does not record them. A command that cannot be started defers
// (4.3.0) as pipe(8)'s child does when execvp() fails, with moat's own text.
package pipe

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/asuser"
	"moat/internal/maillog"
	"moat/internal/queue"
)

// outputLimit is how much command output is kept for the reason text:
// pipe_command() reads one VSTREAM_BUFSIZE (4096 bytes) buffer.
const outputLimit = 4096

// Agent delivers through one pipe(8) master.cf service. It holds only what
// New computed and is safe for concurrent use.
type Agent struct {
	service   string
	a         *attrs
	argv      []argTemplate
	creds     asuser.Creds
	env       []string
	timeLimit time.Duration
	split     splitter
	log       *maillog.Logger
	now       func() time.Time
	// run runs the command as user=, here or in the root executor.
	run *asuser.Runner
}

// New builds the agent for the master.cf pipe row d.Service from its
// arguments d.Args (pipe(8) "COMMAND ATTRIBUTE SYNTAX"). Every error names
// the service and the attribute at fault.
//
// user= must name an account (and user=name:group a group) that is neither
// root (uid 0, or gid 0) nor the mail system: like pipe(8), moat refuses
// mail_owner's uid and primary gid and setgid_group's gid. moat is stricter
// about mail_owner: the name itself is refused even when no such account
// exists (pipe(8) compares only ids, and a mail_owner that does not resolve
// would let anything through), because a command running as the queue's
// owner could rewrite every queued message.
func New(d delivery.Deps) (*Agent, error) {
	if d.Config == nil {
		return nil, fmt.Errorf("pipe service %s: no configuration", d.Service)
	}
	fail := func(err error) error {
		return fmt.Errorf("master.cf service %s (pipe): %w", d.Service, err)
	}
	a, err := parseAttrs(d.Args)
	if err != nil {
		return nil, fail(err)
	}
	argv, err := compileArgv(a.argv)
	if err != nil {
		return nil, fail(fmt.Errorf("argv=: %w", err))
	}
	creds, err := lookupCreds(d.Config, a.user, a.group)
	if err != nil {
		return nil, fail(err)
	}
	limit, err := timeLimit(d.Config, d.Service)
	if err != nil {
		return nil, fail(err)
	}
	env, err := commandEnv(d.Config)
	if err != nil {
		return nil, fail(err)
	}
	ownReq, err := d.Config.Bool("owner_request_special")
	if err != nil {
		return nil, fail(err)
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	return &Agent{
		service:   d.Service,
		a:         a,
		argv:      argv,
		creds:     creds,
		env:       env,
		timeLimit: limit,
		split: splitter{
			delim:        d.Config.Get("recipient_delimiter"),
			doubleBounce: d.Config.Get("double_bounce_sender"),
			ownerRequest: ownReq,
		},
		log: d.Log,
		now: now,
		run: asuser.NewRunner(d.Self, d.SpawnSocket),
	}, nil
}

// FinalDelivery reports whether the row has flag X: the command delivers
// for good, so a success DSN says "delivered" rather than "relayed"
// (pipe(8), flag X). delivery.Result has no DSN action, so the queue
// manager asks here.
func (ag *Agent) FinalDelivery() bool { return ag.a.flags&flagFinal != 0 }

// Close releases nothing: the agent holds no tables or connections.
func (ag *Agent) Close() error { return nil }

// lookupCreds resolves user=name[:group] as pipe(8) does (getpwnam,
// getgrnam) and refuses the privileged identities New describes. Like
// Postfix's set_ugid(), the command gets the one group as its only
// supplementary group.
func lookupCreds(cfg *config.Config, name, group string) (asuser.Creds, error) {
	owner := cfg.Get("mail_owner")
	if name == owner {
		return asuser.Creds{}, fmt.Errorf("user=%s: the mail system owner (mail_owner) may not run commands", name)
	}
	u, err := user.Lookup(name)
	if err != nil {
		return asuser.Creds{}, fmt.Errorf("user=%s: unknown username: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return asuser.Creds{}, fmt.Errorf("user=%s: account has a non-numeric uid or gid", name)
	}
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return asuser.Creds{}, fmt.Errorf("user=%s:%s: unknown group: %w", name, group, err)
		}
		if gid, err = strconv.ParseUint(g.Gid, 10, 32); err != nil {
			return asuser.Creds{}, fmt.Errorf("user=%s:%s: group has a non-numeric gid", name, group)
		}
	}
	if uid == 0 {
		return asuser.Creds{}, fmt.Errorf("user=%s: user= command-line attribute specifies root privileges", name)
	}
	if gid == 0 {
		return asuser.Creds{}, fmt.Errorf("user=%s: user= command-line attribute specifies privileged group id 0", name)
	}
	if ou, err := user.Lookup(owner); err == nil {
		if ou.Uid == strconv.FormatUint(uid, 10) {
			return asuser.Creds{}, fmt.Errorf("user=%s: user= command-line attribute specifies mail system owner %s", name, owner)
		}
		if ou.Gid == strconv.FormatUint(gid, 10) {
			return asuser.Creds{}, fmt.Errorf("user=%s: user= command-line attribute specifies mail system owner %s group id %d", name, owner, gid)
		}
	}
	if sg := cfg.Get("setgid_group"); sg != "" {
		if g, err := user.LookupGroup(sg); err == nil && g.Gid == strconv.FormatUint(gid, 10) {
			return asuser.Creds{}, fmt.Errorf("user=%s: user= command-line attribute specifies mail system %s group id %d", name, sg, gid)
		}
	}
	return asuser.Creds{
		UID: uint32(uid), GID: uint32(gid), Groups: []uint32{uint32(gid)},
		User: u.Username, Home: u.HomeDir,
	}, nil
}

// timeLimit is <service>_time_limit, defaulting to command_time_limit
// (pipe(8) "RESOURCE AND RATE CONTROLS").
func timeLimit(cfg *config.Config, service string) (time.Duration, error) {
	name := service + "_time_limit"
	if raw, ok := cfg.Raw(name); ok {
		v, err := cfg.Expand(raw)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		d, err := config.ParseDuration(strings.TrimSpace(v), 's')
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("%s = %s: want a positive time", name, v)
		}
		return d, nil
	}
	d, err := cfg.Duration("command_time_limit")
	if err != nil {
		return 0, fmt.Errorf("command_time_limit: %w", err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("command_time_limit: want a positive time")
	}
	return d, nil
}

// commandEnv is the command's whole environment (see the package doc).
func commandEnv(cfg *config.Config) ([]string, error) {
	names, err := cfg.List("export_environment")
	if err != nil {
		return nil, fmt.Errorf("export_environment: %w", err)
	}
	path := "/usr/bin:/bin"
	var env []string
	for _, n := range names {
		if strings.HasPrefix(n, "{") && strings.HasSuffix(n, "}") {
			n = strings.TrimSpace(n[1 : len(n)-1])
		}
		if k, v, ok := strings.Cut(n, "="); ok {
			if k == "PATH" {
				path = v
				continue
			}
			env = append(env, k+"="+v)
			continue
		}
		if n == "PATH" {
			continue
		}
		if v, ok := os.LookupEnv(n); ok {
			env = append(env, n+"="+v)
		} else if n == "MAIL_CONFIG" && cfg.Dir != "" {
			env = append(env, "MAIL_CONFIG="+cfg.Dir)
		}
	}
	return append(env, "PATH="+path), nil
}

// Deliver runs the command once for the request's recipients and gives
// each the same result (pipe(8) delivers a request as one command).
func (ag *Agent) Deliver(ctx context.Context, req *delivery.Request) []delivery.Result {
	if len(req.Recipients) == 0 {
		return nil
	}
	v := ag.deliver(ctx, req)
	out := make([]delivery.Result, len(req.Recipients))
	done := ag.now()
	for i, r := range req.Recipients {
		out[i] = delivery.Result{Index: r.Index, State: v.state, DSN: v.dsn, Reason: v.reason, Relay: ag.service, Done: done}
	}
	return out
}

// verdict is one request's outcome.
type verdict struct {
	state  queue.RcptState
	dsn    string
	reason string
}

func defer4(dsn, reason string) verdict {
	return verdict{state: queue.RcptDeferred, dsn: dsn, reason: reason}
}

func bounce5(dsn, reason string) verdict {
	return verdict{state: queue.RcptBounced, dsn: dsn, reason: reason}
}

func (ag *Agent) deliver(ctx context.Context, req *delivery.Request) verdict {
	rcpts := req.Recipients
	if req.Content == nil {
		return defer4("4.3.0", "error reading message: no content")
	}
	env := req.Envelope
	if env == nil {
		env = &queue.Envelope{}
	}
	for _, f := range []struct {
		bit    int
		letter string
	}{{flagDelivered, "D"}, {flagOrigRcpt, "O"}} {
		if ag.a.flags&f.bit != 0 && len(rcpts) > 1 {
			ag.warn("pipe flag `%s' requires %s_destination_recipient_limit = 1", f.letter, ag.service)
			return defer4("4.3.5", "mail system configuration error")
		}
	}
	size := env.Size
	if ag.a.sizeLimit != 0 && size > ag.a.sizeLimit {
		return bounce5("5.2.3", "message too large")
	}
	if ag.a.flags&flagDelivered != 0 {
		loop, err := deliveredTo(req.Content(), rcpts[0].Address)
		if err != nil {
			return defer4("4.3.0", "error reading message: "+err.Error())
		}
		if loop {
			return bounce5("5.4.6", "mail forwarding loop for "+rcpts[0].Address)
		}
	}

	sender := env.Sender
	if sender == "" {
		sender = ag.a.nullSender
	}
	vars := map[string]string{
		"sender":          sender,
		"nexthop":         req.Nexthop,
		"size":            strconv.FormatInt(size, 10),
		"client_address":  env.ClientAddr,
		"client_helo":     env.Helo,
		"client_hostname": env.ClientName,
		"client_port":     "",
		"client_protocol": env.Protocol,
		"sasl_method":     "",
		"sasl_username":   env.SASLUser,
		"sasl_sender":     "",
		"queue_id":        req.QueueID,
	}
	if sender != "" && ag.a.flags&flagQuote != 0 {
		vars["sender"] = quoteLocal(sender)
	}
	if ag.a.flags&flagFoldHost != 0 {
		vars["nexthop"] = foldCase(req.Nexthop)
	}
	infos := make([]rcptInfo, len(rcpts))
	for i, r := range rcpts {
		infos[i] = rcptInfo{address: r.Address, orig: r.OrigAddress}
	}
	argv := expandArgv(ag.argv, vars, infos, ag.a.flags, ag.split)
	if len(argv) == 0 || argv[0] == "" {
		ag.warn("service %s: command name expands to nothing", ag.service)
		return defer4("4.3.5", "mail system configuration error")
	}

	orig := rcpts[0].OrigAddress
	if orig == "" {
		orig = rcpts[0].Address
	}
	cr := newContentReader(req.Content(), copyOptions{
		flags: ag.a.flags, eol: ag.a.eol, sender: sender,
		orig: orig, rcpt: rcpts[0].Address, now: ag.now(),
	})
	res := ag.run.Run(ctx, asuser.Command{
		Creds:       ag.creds,
		Argv:        argv,
		Env:         ag.env,
		Dir:         ag.a.directory,
		Stdin:       cr,
		TimeLimit:   ag.timeLimit,
		OutputLimit: outputLimit,
	})
	return ag.judge(ctx, argv[0], res, cr.err)
}

func (ag *Agent) warn(format string, args ...any) {
	if ag.log != nil {
		ag.log.Warning(format, args...)
	}
}
