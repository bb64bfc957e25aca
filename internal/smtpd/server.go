package smtpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"moat/internal/anvil"
	"moat/internal/cleanup"
	"moat/internal/config"
	"moat/internal/dns"
	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/matchlist"
	"moat/internal/queue"
	"moat/internal/rewrite"
	"moat/internal/smtp"
	"moat/internal/tlsconf"
)

// Deps are what one service's sessions share. The master builds one per
// master.cf inet service and per configuration generation: reload builds new
// ones, and sessions in progress keep theirs until they end (postfix(1)
// reload).
type Deps struct {
	// Config is the service's effective view: main.cf plus its master.cf
	// -o overrides (master(5)).
	Config *config.Config
	// Service is the master.cf service name ("smtp", "127.0.0.1:2525").
	Service string
	// Log is already tagged "$syslog_name/smtpd" by the master.
	Log   *maillog.Logger
	Queue *queue.Queue
	// Policy decides at each stage (issue 6's restriction lists); nil
	// accepts whatever the protocol allows.
	Policy Policy
	// Committed is called after each durable commit, to wake delivery.
	// It may be nil.
	Committed func(id string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Anvil counts connections and rates for the smtpd_client_*_limit
	// parameters across every smtpd process (anvil(8)); nil means no
	// client limits. The master gives each smtpd an anvil.Client for
	// private/anvil, or one shared *anvil.Table when all run in-process.
	Anvil anvil.Limiter
	// Rewrite applies canonical_maps and virtual_alias_maps to each
	// message's envelope before it is queued, as Postfix's cleanup(8)
	// does; nil queues the addresses as the client gave them.
	Rewrite *rewrite.Rewriter
	// Unlisted refuses unknown recipients (and senders) at RCPT
	// (smtpd_reject_unlisted_recipient, smtpd_reject_unlisted_sender);
	// nil checks nothing. The caller builds it with the options that reach
	// proxymap, since local_recipient_maps usually names proxy: tables.
	Unlisted *Unlisted
	// ProxySocket is proxymap(8)'s socket, for the proxy: tables of
	// smtpd_sasl_password_maps (a jailed smtpd cannot reopen a rebuilt
	// table outside its jail); empty opens them directly.
	ProxySocket string
	// Resolver answers the sessions' DNS questions (the client name,
	// the restrictions' lookups); nil builds one from the configuration
	// (dns.FromConfig) when the server is made.
	Resolver *dns.Resolver
}

// DefaultSessionTimeLimit caps a whole session when the moat-only parameter
// smtpd_session_time_limit is absent: smtpd_timeout bounds each read, but a
// client trickling one byte per read could otherwise hold a session forever.
const DefaultSessionTimeLimit = 3600 * time.Second

// settings are the parameters a session reads, read once in New so that a
// session never parses configuration and a bad value fails the service at
// start, not in the middle of a conversation.
type settings struct {
	myhostname, mailName, banner string
	// contentFilter is content_filter: every message this service
	// queues goes to that transport:destination first (postconf(5)).
	contentFilter string

	timeout, sessionLimit, errorSleep time.Duration
	hardErrors, softErrors, junkLimit int
	rcptLimit                         int
	sizeLimit, queueMinfree           int64
	lineLimit                         int

	heloRequired, disableVRFY, strict821, smtputf8 bool
	strictSMTPUTF8, delayReject, forbidPipelining  bool
	peernameLookup, portLogging                    bool

	bareNewline     smtp.BareNewline
	bareNewlineCode int
	bareExclusions  *matchlist.List
	debugPeers      *matchlist.List
	debugLevel      int

	discardEHLO      map[string]bool
	forbidden        *forbiddenList
	fastFlushDomains []string

	anvil anvilLimits
	auth  authSettings // SMTP AUTH (auth.go)
}

// Server runs the sessions of one service.
type Server struct {
	d       Deps
	set     settings
	cleanup *cleanup.Settings
	dns     *dns.Resolver // Deps.Resolver or our own (client.go)
	ownDNS  bool
	tls     *tlsconf.Server // smtpd_tls_* (tls.go)
}

// New reads every parameter the sessions need once and opens the cleanup
// tables, so a configuration error is reported when the service starts
// (as Postfix's smtpd fails at start-up on a bad main.cf).
func New(d Deps) (*Server, error) {
	if d.Config == nil || d.Log == nil || d.Queue == nil {
		return nil, errors.New("smtpd: Config, Log and Queue are required")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &Server{d: d}
	log := d.Log
	mo, err := maps.DaemonOptions(d.Config, func(msg string) { log.Warning("%s", msg) })
	if err != nil {
		return nil, fmt.Errorf("smtpd: service %s: %w", d.Service, err)
	}
	if err := s.readSettings(mo); err != nil {
		s.Close()
		return nil, fmt.Errorf("smtpd: service %s: %w", d.Service, err)
	}
	if err := s.readTLS(); err != nil {
		s.Close()
		return nil, fmt.Errorf("smtpd: service %s: %w", d.Service, err)
	}
	if err := s.readDNS(mo); err != nil {
		s.Close()
		return nil, fmt.Errorf("smtpd: service %s: %w", d.Service, err)
	}
	cs, err := cleanup.FromConfig(d.Config, mo)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("smtpd: service %s: %w", d.Service, err)
	}
	s.cleanup = cs
	return s, nil
}

// Close releases the tables; call it after every session has ended.
func (s *Server) Close() error {
	var errs []error
	for _, l := range []*matchlist.List{s.set.bareExclusions, s.set.debugPeers, s.set.anvil.exceptions} {
		if l != nil {
			errs = append(errs, l.Close())
		}
	}
	errs = append(errs, s.set.forbidden.close(), s.closeDNS())
	if s.cleanup != nil {
		errs = append(errs, s.cleanup.Close())
	}
	errs = append(errs, s.set.auth.close())
	return errors.Join(errs...)
}

// ServeConn runs one SMTP session on c and returns when it ends. Cancelling
// ctx (postfix stop) ends the session at the next command boundary with
// "421 4.3.2 Service shutting down"; a read in progress is interrupted, and a
// message whose DATA had not ended is not acknowledged, so nothing is lost.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	ss := newSession(ctx, s, c)
	stop := context.AfterFunc(ctx, ss.interrupt)
	defer stop()
	ss.run()
}

func (s *Server) readSettings(mo maps.Options) error {
	c := s.d.Config
	st := &s.set
	var err error
	get := func(name string) string {
		v, e := c.GetErr(name)
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	boolean := func(name string) bool {
		v, e := c.Bool(name)
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	integer := func(name string) int64 {
		v, e := c.Int(name)
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	dur := func(name string) time.Duration {
		v, e := c.Duration(name)
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	size := func(name string) int64 {
		v, e := c.Size(name)
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	st.myhostname = get("myhostname")
	st.contentFilter = strings.TrimSpace(get("content_filter"))
	st.mailName = get("mail_name")
	st.banner = get("smtpd_banner")
	st.timeout = dur("smtpd_timeout")
	st.errorSleep = dur("smtpd_error_sleep_time")
	st.hardErrors = int(integer("smtpd_hard_error_limit"))
	st.softErrors = int(integer("smtpd_soft_error_limit"))
	st.junkLimit = int(integer("smtpd_junk_command_limit"))
	st.rcptLimit = int(integer("smtpd_recipient_limit"))
	st.sizeLimit = size("message_size_limit")
	st.queueMinfree = size("queue_minfree")
	st.lineLimit = int(integer("line_length_limit"))
	st.heloRequired = boolean("smtpd_helo_required")
	st.disableVRFY = boolean("disable_vrfy_command")
	st.strict821 = boolean("strict_rfc821_envelopes")
	st.smtputf8 = boolean("smtputf8_enable")
	st.strictSMTPUTF8 = boolean("strict_smtputf8")
	st.delayReject = boolean("smtpd_delay_reject")
	st.forbidPipelining = boolean("smtpd_forbid_unauth_pipelining")
	st.peernameLookup = boolean("smtpd_peername_lookup")
	st.portLogging = boolean("smtpd_client_port_logging")
	st.bareNewlineCode = int(integer("smtpd_forbid_bare_newline_reject_code"))
	st.debugLevel = int(integer("debug_peer_level"))
	if err != nil {
		return err
	}
	// smtpd_session_time_limit is moat's own; until the parameter table
	// has it, the built-in cap applies.
	st.sessionLimit = DefaultSessionTimeLimit
	if v, e := c.Duration("smtpd_session_time_limit"); e == nil && v > 0 {
		st.sessionLimit = v
	}
	// Get has expanded $myhostname, $mail_name...; RFC 5321 §4.3.1 wants
	// the server's name first, so an empty banner gets the default's form.
	if strings.TrimSpace(st.banner) == "" {
		st.banner = st.myhostname + " ESMTP"
	}
	if st.timeout <= 0 {
		return errors.New("smtpd_timeout must be positive")
	}
	if st.bareNewline, err = smtp.ParseBareNewline(c.Get("smtpd_forbid_bare_newline")); err != nil {
		return fmt.Errorf("smtpd_forbid_bare_newline: %w", err)
	}
	if st.bareExclusions, err = matchlist.New(c, "smtpd_forbid_bare_newline_exclusions", matchlist.Host, mo); err != nil {
		return err
	}
	if st.debugPeers, err = matchlist.New(c, "debug_peer_list", matchlist.Host, mo); err != nil {
		return err
	}
	st.discardEHLO = map[string]bool{}
	words, err := c.List("smtpd_discard_ehlo_keywords")
	if err != nil {
		return err
	}
	for _, w := range words {
		st.discardEHLO[strings.ToUpper(w)] = true
	}
	words, err = c.List("smtpd_forbidden_commands")
	if err != nil {
		return err
	}
	if st.forbidden, err = newForbiddenList(words, mo); err != nil {
		return err
	}
	if st.fastFlushDomains, err = c.List("fast_flush_domains"); err != nil {
		return err
	}
	if err := s.readAnvilLimits(mo); err != nil {
		return err
	}
	return s.readAuthSettings(mo)
}
