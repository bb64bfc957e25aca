package local

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/delivery/asuser"
	"moat/internal/maps"
	"moat/internal/queue"
	"moat/internal/resolve"
)

// Relay is relay= in the log for every local delivery, as local(8) logs it.
const Relay = "local"

// Agent is one local(8) service: the settings read once from main.cf
// (with the master.cf row's -o overrides) and the open tables. It is safe
// for concurrent use; per-recipient state lives in each delivery.
type Agent struct {
	d   delivery.Deps
	set *settings
	// run runs the mailbox writes, commands and file reads with the
	// recipient's rights, here or in the root executor.
	run *asuser.Runner
}

// New reads the local(8) parameters from d.Config and opens their tables.
// A bad value is an error naming the parameter, so `postfix start` fails
// loudly instead of local(8) bouncing mail later.
func New(d delivery.Deps) (*Agent, error) {
	if d.Config == nil {
		return nil, fmt.Errorf("local: no configuration")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	set, err := readSettings(d)
	if err != nil {
		return nil, err
	}
	return &Agent{d: d, set: set, run: asuser.NewRunner(d.Self, d.SpawnSocket)}, nil
}

// Close releases the tables New opened.
func (a *Agent) Close() error {
	a.run.Close() // the kept executor connections
	return a.set.close()
}

// Deliver delivers each recipient of req in turn and returns one Result
// per recipient. A recipient whose context has ended is deferred.
func (a *Agent) Deliver(ctx context.Context, req *delivery.Request) []delivery.Result {
	results := make([]delivery.Result, 0, len(req.Recipients))
	// The Delivered-To: headers are the same for every recipient: read
	// them once (local(8) reads them once per request too).
	seen, seenErr := deliveredTo(req.Content())
	for _, rcpt := range req.Recipients {
		var r delivery.Result
		switch {
		case ctx.Err() != nil:
			r = delivery.Result{State: queue.RcptDeferred, DSN: "4.3.0",
				Reason: "delivery interrupted: " + ctx.Err().Error()}
		case seenErr != nil:
			r = delivery.Result{State: queue.RcptDeferred, DSN: "4.3.0",
				Reason: "cannot read queue file: " + seenErr.Error()}
		default:
			r = a.deliverRecipient(ctx, req, rcpt, seen)
		}
		r.Index = rcpt.Index
		r.Relay = Relay
		if r.Done.IsZero() {
			r.Done = a.d.Now()
		}
		results = append(results, r)
	}
	return results
}

// deliverRecipient is local(8)'s deliver_recipient() for one request
// recipient: the loop check, then the delivery switch, then the
// forwarded copies, folded into one Result.
func (a *Agent) deliverRecipient(ctx context.Context, req *delivery.Request, rcpt delivery.Recipient, seen map[string]bool) delivery.Result {
	// local(8): mail that already went through this recipient came back;
	// another copy would only go round again (RFC 5321 section 6.3 on
	// loop detection).
	if seen[strings.ToLower(rcpt.Address)] {
		return delivery.Result{State: queue.RcptBounced, DSN: "5.4.6",
			Reason: "mail forwarding loop for " + rcpt.Address}
	}
	orig := rcpt.OrigAddress
	if orig == "" {
		orig = rcpt.Address
	}
	j := &job{
		a:         a,
		ctx:       ctx,
		req:       req,
		rcpt:      rcpt,
		delivered: rcpt.Address,
		origRcpt:  orig,
		seen:      seen,
		dup:       map[string]bool{},
	}
	st := attrs{rcpt: rcpt.Address, sender: req.Envelope.Sender}
	j.recipient(st)
	if j.out.state != queue.RcptDeferred {
		j.flushForwards()
	}
	return j.result()
}

// settings are the local(8) parameters, read once per agent.
type settings struct {
	aliasMaps   []namedTable
	delimiters  string
	propAlias   bool // propagate_unmatched_extensions has "alias"
	propForward bool
	propInclude bool
	ownerSpec   bool // owner_request_special
	expandOwner bool // expand_owner_alias
	cmdMask     expMask
	fileMask    expMask
	forwardPath []string

	mailboxTransport     string
	mailboxTransportMaps []namedTable
	mailboxCommand       string
	mailboxCommandMaps   []namedTable
	homeMailbox          string
	spoolDir             string
	lockFcntl, lockFlock bool
	lockDot              bool
	sizeLimit            int64
	fallbackTransport    string
	fallbackMaps         []namedTable
	luserRelay           string

	shell       string
	execDir     string
	timeLimit   time.Duration
	exportEnv   []string
	defaultPriv account

	hdrCommand, hdrFile, hdrForward bool
	origRcptHdr                     bool
	strictOwner                     bool
	// users is the passwd file, parsed once per change.
	users *passwdCache
	// requireHome is require_home_directory (default no): defer rather
	// than deliver when the recipient's home directory does not exist.
	requireHome bool
	lineLimit   int

	cmdFilter, fwdFilter, dirFilter string
	myorigin                        string
	mailOwnerUID                    int
	hasMailOwner                    bool

	resolver *resolve.Resolver
}

// namedTable is an open table and the "type:name" it came from (for the
// owner check and warnings).
type namedTable struct {
	spec string
	t    maps.Table
}

// expMask is which expansions allow_mail_to_commands and
// allow_mail_to_files permit (postconf(5): alias, forward, include).
type expMask uint8

const (
	expAlias expMask = 1 << iota
	expForward
	expInclude
)

func (s *settings) close() error {
	var first error
	closeAll := func(ts []namedTable) {
		for _, t := range ts {
			if err := t.t.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	closeAll(s.aliasMaps)
	closeAll(s.mailboxTransportMaps)
	closeAll(s.mailboxCommandMaps)
	closeAll(s.fallbackMaps)
	if s.resolver != nil {
		if err := s.resolver.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func readSettings(d delivery.Deps) (_ *settings, err error) {
	cfg := d.Config
	s := &settings{users: newPasswdCache(passwdFile)}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	warn := func(msg string) {
		if d.Log != nil {
			d.Log.Warning("%s", msg)
		}
	}
	opts, err := maps.DaemonOptions(cfg, warn)
	if err != nil {
		return nil, fmt.Errorf("local: table options: %w", err)
	}
	if d.ProxySocket != "" {
		opts = opts.WithProxySocket(d.ProxySocket)
	}
	openList := func(param string) ([]namedTable, error) {
		specs, err := cfg.List(param)
		if err != nil {
			return nil, fmt.Errorf("local: %s: %w", param, err)
		}
		var out []namedTable
		for _, spec := range specs {
			t, err := maps.Open(spec, opts)
			if err != nil {
				for _, o := range out {
					o.t.Close()
				}
				return nil, fmt.Errorf("local: %s: %w", param, err)
			}
			out = append(out, namedTable{spec: spec, t: t})
		}
		return out, nil
	}
	if s.aliasMaps, err = openList("alias_maps"); err != nil {
		return nil, err
	}
	for _, t := range s.aliasMaps {
		if err := checkNoRegsub(t.spec); err != nil {
			return nil, fmt.Errorf("local: alias_maps: %w", err)
		}
	}
	if s.mailboxTransportMaps, err = openList("mailbox_transport_maps"); err != nil {
		return nil, err
	}
	if s.mailboxCommandMaps, err = openList("mailbox_command_maps"); err != nil {
		return nil, err
	}
	if s.fallbackMaps, err = openList("fallback_transport_maps"); err != nil {
		return nil, err
	}
	s.delimiters = cfg.Get("recipient_delimiter")
	prop, err := cfg.List("propagate_unmatched_extensions")
	if err != nil {
		return nil, fmt.Errorf("local: propagate_unmatched_extensions: %w", err)
	}
	for _, p := range prop {
		switch strings.ToLower(p) {
		case "alias":
			s.propAlias = true
		case "forward":
			s.propForward = true
		case "include":
			s.propInclude = true
		case "canonical", "virtual":
		default:
			return nil, fmt.Errorf("local: propagate_unmatched_extensions: unknown keyword %q", p)
		}
	}
	bools := []struct {
		name string
		v    *bool
	}{
		{"owner_request_special", &s.ownerSpec},
		{"expand_owner_alias", &s.expandOwner},
		{"enable_original_recipient", &s.origRcptHdr},
		{"strict_mailbox_ownership", &s.strictOwner},
		{"require_home_directory", &s.requireHome},
	}
	for _, b := range bools {
		if *b.v, err = cfg.Bool(b.name); err != nil {
			return nil, fmt.Errorf("local: %s: %w", b.name, err)
		}
	}
	if s.cmdMask, err = readMask(cfg, "allow_mail_to_commands"); err != nil {
		return nil, err
	}
	if s.fileMask, err = readMask(cfg, "allow_mail_to_files"); err != nil {
		return nil, err
	}
	// forward_path, luser_relay and command_execution_directory hold
	// local(8)'s own $user, $home ... macros, expanded per recipient; main.cf
	// expansion must not see them (postconf(5) forward_path).
	fp, _ := cfg.Raw("forward_path")
	s.forwardPath = config.SplitList(fp)
	if _, st := checkTemplate(fp); st&config.StatError != 0 {
		return nil, fmt.Errorf("local: forward_path: syntax error in %q", fp)
	}
	s.luserRelay, _ = cfg.Raw("luser_relay")
	if _, st := checkTemplate(s.luserRelay); st&config.StatError != 0 {
		return nil, fmt.Errorf("local: luser_relay: syntax error in %q", s.luserRelay)
	}
	s.execDir, _ = cfg.Raw("command_execution_directory")
	if _, st := checkTemplate(s.execDir); st&config.StatError != 0 {
		return nil, fmt.Errorf("local: command_execution_directory: syntax error in %q", s.execDir)
	}
	s.mailboxTransport = cfg.Get("mailbox_transport")
	s.mailboxCommand = cfg.Get("mailbox_command")
	s.homeMailbox = cfg.Get("home_mailbox")
	if strings.HasPrefix(s.homeMailbox, "/") {
		return nil, fmt.Errorf("local: home_mailbox: %q must be a path relative to the home directory", s.homeMailbox)
	}
	s.spoolDir = cfg.Get("mail_spool_directory")
	if !strings.HasPrefix(s.spoolDir, "/") {
		return nil, fmt.Errorf("local: mail_spool_directory: %q is not an absolute path", s.spoolDir)
	}
	s.fallbackTransport = cfg.Get("fallback_transport")
	locks, err := cfg.List("mailbox_delivery_lock")
	if err != nil {
		return nil, fmt.Errorf("local: mailbox_delivery_lock: %w", err)
	}
	for _, l := range locks {
		switch strings.ToLower(l) {
		case "fcntl":
			s.lockFcntl = true
		case "flock":
			s.lockFlock = true
		case "dotlock":
			s.lockDot = true
		default:
			return nil, fmt.Errorf("local: mailbox_delivery_lock: unknown lock method %q", l)
		}
	}
	if s.sizeLimit, err = cfg.Size("mailbox_size_limit"); err != nil {
		return nil, fmt.Errorf("local: mailbox_size_limit: %w", err)
	}
	msgLimit, err := cfg.Size("message_size_limit")
	if err != nil {
		return nil, fmt.Errorf("local: message_size_limit: %w", err)
	}
	// local(8) refuses to start with a mailbox smaller than one message:
	// every large message would bounce as "mailbox full".
	if s.sizeLimit > 0 && msgLimit > 0 && s.sizeLimit < msgLimit {
		return nil, fmt.Errorf("local: mailbox_size_limit (%d) is smaller than message_size_limit (%d)", s.sizeLimit, msgLimit)
	}
	s.shell = cfg.Get("local_command_shell")
	if s.timeLimit, err = cfg.Duration("command_time_limit"); err != nil {
		return nil, fmt.Errorf("local: command_time_limit: %w", err)
	}
	if s.timeLimit <= 0 {
		return nil, fmt.Errorf("local: command_time_limit: must be positive")
	}
	if s.exportEnv, err = cfg.List("export_environment"); err != nil {
		return nil, fmt.Errorf("local: export_environment: %w", err)
	}
	hdrs, err := cfg.List("prepend_delivered_header")
	if err != nil {
		return nil, fmt.Errorf("local: prepend_delivered_header: %w", err)
	}
	for _, h := range hdrs {
		switch strings.ToLower(h) {
		case "command":
			s.hdrCommand = true
		case "file":
			s.hdrFile = true
		case "forward":
			s.hdrForward = true
		default:
			return nil, fmt.Errorf("local: prepend_delivered_header: unknown keyword %q", h)
		}
	}
	s.cmdFilter = cfg.Get("command_expansion_filter")
	s.fwdFilter = cfg.Get("forward_expansion_filter")
	s.dirFilter = cfg.Get("execution_directory_expansion_filter")
	s.myorigin = cfg.Get("myorigin")
	ll, err := cfg.Int("line_length_limit")
	if err != nil || ll < 1 {
		return nil, fmt.Errorf("local: line_length_limit: bad value %q", cfg.Get("line_length_limit"))
	}
	s.lineLimit = int(ll)
	s.mailOwnerUID, s.hasMailOwner = cfg.MailOwnerUID()

	privs := cfg.Get("default_privs")
	acct, err := s.users.lookupUser(privs)
	if err != nil {
		return nil, fmt.Errorf("local: default_privs: %w", err)
	}
	if acct == nil {
		return nil, fmt.Errorf("local: default_privs: unknown user %q", privs)
	}
	if acct.uid == 0 || (s.hasMailOwner && int(acct.uid) == s.mailOwnerUID) {
		return nil, fmt.Errorf("local: default_privs: %q must not be root or mail_owner", privs)
	}
	s.defaultPriv = *acct

	if s.resolver, err = resolve.New(cfg, opts); err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	return s, nil
}

func readMask(cfg *config.Config, param string) (expMask, error) {
	words, err := cfg.List(param)
	if err != nil {
		return 0, fmt.Errorf("local: %s: %w", param, err)
	}
	var m expMask
	for _, w := range words {
		switch strings.ToLower(w) {
		case "alias":
			m |= expAlias
		case "forward":
			m |= expForward
		case "include":
			m |= expInclude
		default:
			return 0, fmt.Errorf("local: %s: unknown keyword %q", param, w)
		}
	}
	return m, nil
}

// creds turns an account into the identity asuser runs as.
func (a account) creds() asuser.Creds {
	return asuser.Creds{UID: a.uid, GID: a.gid, User: a.name, Home: a.home}
}

// spoolGroup returns the spool directory's group when the directory is
// group-writable (Debian's /var/mail is root:mail 2775): the recipient's
// child needs it to create dot-lock files and new mailboxes there. A
// directory everyone may write (1777, as /tmp) needs no group, and the
// root group (gid 0) is never lent: the delivery executor refuses it.
func spoolGroup(dir string) (uint32, bool) {
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm()&0o020 == 0 || fi.Mode().Perm()&0o002 != 0 {
		return 0, false
	}
	gid, ok := statGID(fi)
	return gid, ok && gid != 0
}

// checkNoRegsub refuses a regexp or pcre alias table whose results use
// $number substitution: local(8) "SECURITY" disallows it, because the
// recipient's local part, which anyone can choose, would end up in a
// |command or a /file name. Postfix opens the table with
// DICT_FLAG_NO_REGSUB; maps has no such flag, so moat reads the source
// and refuses, conservatively, any "$1" .. "$9", "${1" or "$(1" in it.
func checkNoRegsub(spec string) error {
	typ, name, _ := strings.Cut(spec, ":")
	for typ == "proxy" {
		typ, name, _ = strings.Cut(name, ":")
	}
	if typ != "regexp" && typ != "pcre" {
		return nil
	}
	var data []byte
	if strings.HasPrefix(name, "{") {
		data = []byte(name)
	} else {
		var err error
		if data, err = os.ReadFile(name); err != nil {
			return fmt.Errorf("%s: %w", spec, err)
		}
	}
	for n, line := range strings.Split(string(data), "\n") {
		if t := strings.TrimSpace(line); t == "" || t[0] == '#' {
			continue
		}
		for i := 0; i+1 < len(line); i++ {
			if line[i] != '$' {
				continue
			}
			c := line[i+1]
			if (c == '{' || c == '(') && i+2 < len(line) {
				c = line[i+2]
			}
			if c >= '0' && c <= '9' {
				return fmt.Errorf("%s, line %d: $number substitution is not allowed in alias_maps (local(8) SECURITY)", spec, n+1)
			}
		}
	}
	return nil
}
