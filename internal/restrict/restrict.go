package restrict

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"weak"

	"moat/internal/config"
	"moat/internal/dns"
	"moat/internal/maps"
	"moat/internal/matchlist"
	"moat/internal/resolve"
	"moat/internal/smtpd"
)

// Log receives what the restrictions log besides the reject record that
// the caller writes for a refusing Decision: warnings (Warning true, text
// without "warning: ") and the info records Postfix writes for WARN, INFO,
// HOLD, DISCARD, FILTER, REDIRECT and reject_warning ("NOQUEUE: hold: RCPT
// from ...").
type Log func(warning bool, text string)

// Lists holds one service's restriction lists and everything they consult.
// It is an smtpd.Policy and is safe for concurrent use: each Check keeps
// its own evaluation state.
type Lists struct {
	lists   map[smtpd.Stage][]string
	classes map[string][]string
	tables  map[string]maps.Table
	// filters are the DNS list reply filters the lists name, parsed at
	// start-up ("=127.0.0.[2..11]", "&0.0.0.4").
	filters map[string]*dns.AddrFilter

	mynetworks, permMX *matchlist.List
	mynetworksErr      error // NewStandalone: why mynetworks is nil
	resolver           *resolve.Resolver
	unlisted           *smtpd.Unlisted
	dns                *dns.Resolver
	ownDNS             bool
	policy             *policyServices

	rblReply, loginMaps, relayCerts maps.Table
	access                          maps.AccessOptions

	p    params
	logf Log

	mu       sync.Mutex
	sessions map[weak.Pointer[dns.Session]]*Session
}

// params are the numbers and switches the restrictions read.
type params struct {
	accessReject, accessDefer, reject, deferCode, relay int
	unknownClient, unknownHost, unknownAddr, badName    int
	nonFQDN, rbl, mulRcpt                               int
	heloTempfail, addrTempfail                          string
	delayReject, softBounce, sasl, untrustedRoute       bool
	rejectUnlistedSender, rejectUnlistedRecipient       bool
	defRBLReply                                         string
	expandFilter                                        string
	cfg                                                 *config.Config
}

// New reads the restriction lists of cfg (a service's view, with its -o
// overrides), opens every table they name, mynetworks and the address
// classes. resolver answers the DNS-based restrictions; nil builds one from
// cfg (dns.FromConfig). A restriction this version does not know, a
// missing argument, a class without a definition or lists that would make
// an open relay are errors naming the parameter, so the service fails
// closed at start.
func New(cfg *config.Config, opts maps.Options, resolver *dns.Resolver) (*Lists, error) {
	return build(cfg, opts, resolver, false)
}

// NewStandalone is New for the smtpd-check test driver, as Postfix's
// smtpd_check TEST build: lists that would make an open relay are
// accepted (the scripts start with every list empty). Daemons use New.
func NewStandalone(cfg *config.Config, opts maps.Options, resolver *dns.Resolver) (*Lists, error) {
	return build(cfg, opts, resolver, true)
}

func build(cfg *config.Config, opts maps.Options, resolver *dns.Resolver, standalone bool) (_ *Lists, err error) {
	l := &Lists{
		lists: map[smtpd.Stage][]string{}, classes: map[string][]string{},
		tables: map[string]maps.Table{}, filters: map[string]*dns.AddrFilter{}, dns: resolver,
	}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	l.policy = newPolicyServices(cfg)
	if err = l.readParams(cfg); err != nil {
		return nil, err
	}
	for _, c := range config.SplitList(cfg.Get("smtpd_restriction_classes")) {
		v, ok := cfg.Raw(c)
		if !ok || strings.TrimSpace(cfg.Get(c)) == "" {
			_ = v
			return nil, fmt.Errorf("restriction class `%s' needs a definition", c)
		}
		l.classes[c] = config.SplitList(cfg.Get(c))
	}
	// Postfix defines reject_sender_login_mismatch as a built-in class.
	l.classes["reject_sender_login_mismatch"] = []string{"reject_authenticated_sender_login_mismatch", "reject_unauthenticated_sender_login_mismatch"}
	for st, param := range stageParams {
		l.lists[st] = config.SplitList(cfg.Get(param))
	}
	for name, list := range l.classes {
		if err = l.validate("smtpd_restriction_classes "+name, list, opts); err != nil {
			return nil, err
		}
	}
	for st, param := range stageParams {
		if err = l.validate(param, l.lists[st], opts); err != nil {
			return nil, err
		}
	}
	if !standalone && !l.hasRequired(l.lists[stageRelay]) && !l.hasRequired(l.lists[smtpd.StageRcpt]) {
		return nil, fmt.Errorf("in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains (without one the server is an open relay)")
	}
	// smtpd enforces RFC 2920 itself (smtpd_forbid_unauth_pipelining,
	// on by default): with it off, reject_unauth_pipelining could not
	// see pending input and would silently permit.
	if l.names("reject_unauth_pipelining") {
		if on, _ := cfg.Bool("smtpd_forbid_unauth_pipelining"); !on {
			return nil, fmt.Errorf("reject_unauth_pipelining: moat enforces it with smtpd_forbid_unauth_pipelining = yes (the default); set that instead of turning it off")
		}
	}
	if l.mynetworks, err = matchlist.New(cfg, "mynetworks", matchlist.Addr, opts); err != nil {
		if !standalone {
			return nil, err
		}
		l.mynetworksErr, err = err, nil
	}
	if l.permMX, err = matchlist.New(cfg, "permit_mx_backup_networks", matchlist.Addr, opts); err != nil {
		return nil, err
	}
	if l.resolver, err = resolve.New(cfg, opts); err != nil {
		return nil, err
	}
	// The explicit reject_unlisted_* restrictions check whatever the
	// smtpd_reject_unlisted_* switches say, so open the tables for both.
	// Only when a list names them (or for the test driver, which also
	// applies the implicit checks): smtpd opens these tables itself.
	if standalone || l.names("reject_unlisted_sender", "reject_unlisted_recipient", "check_recipient_maps") {
		on := cfg.WithOverrides(map[string]string{"smtpd_reject_unlisted_sender": "yes", "smtpd_reject_unlisted_recipient": "yes"})
		if l.unlisted, err = smtpd.NewUnlisted(on, opts); err != nil {
			return nil, err
		}
	}
	for _, t := range []struct {
		dst   *maps.Table
		param string
	}{{&l.rblReply, "rbl_reply_maps"}, {&l.loginMaps, "smtpd_sender_login_maps"}, {&l.relayCerts, "relay_clientcerts"}} {
		if *t.dst, err = openList(cfg, t.param, opts); err != nil {
			return nil, err
		}
	}
	if l.dns == nil {
		if l.dns, err = dns.FromConfig(cfg, opts, func(m string) { l.warn("%s", m) }); err != nil {
			return nil, err
		}
		l.ownDNS = true
	}
	return l, nil
}

// names reports whether any list or class names one of the restrictions.
func (l *Lists) names(names ...string) bool {
	has := func(list []string) bool {
		for _, n := range list {
			for _, want := range names {
				if strings.EqualFold(n, want) {
					return true
				}
			}
		}
		return false
	}
	for _, list := range l.lists {
		if has(list) {
			return true
		}
	}
	for _, list := range l.classes {
		if has(list) {
			return true
		}
	}
	return false
}

// stageRelay is restrict's own pseudo stage for smtpd_relay_restrictions.
const stageRelay smtpd.Stage = -1

// stageParams names each stage's list. stageRelay is restrict's own
// pseudo stage for smtpd_relay_restrictions, evaluated at RCPT first.
var stageParams = map[smtpd.Stage]string{
	smtpd.StageConnect: "smtpd_client_restrictions", smtpd.StageHelo: "smtpd_helo_restrictions",
	smtpd.StageMail: "smtpd_sender_restrictions", stageRelay: "smtpd_relay_restrictions",
	smtpd.StageRcpt: "smtpd_recipient_restrictions", smtpd.StageData: "smtpd_data_restrictions",
	smtpd.StageEndOfData: "smtpd_end_of_data_restrictions", smtpd.StageEtrn: "smtpd_etrn_restrictions",
}

func (l *Lists) readParams(cfg *config.Config) error {
	p := &l.p
	p.cfg = cfg
	for _, c := range []struct {
		dst  *int
		name string
	}{
		{&p.accessReject, "access_map_reject_code"}, {&p.accessDefer, "access_map_defer_code"},
		{&p.reject, "reject_code"}, {&p.deferCode, "defer_code"}, {&p.relay, "relay_domains_reject_code"},
		{&p.unknownClient, "unknown_client_reject_code"}, {&p.unknownHost, "unknown_hostname_reject_code"},
		{&p.unknownAddr, "unknown_address_reject_code"}, {&p.badName, "invalid_hostname_reject_code"},
		{&p.nonFQDN, "non_fqdn_reject_code"}, {&p.rbl, "maps_rbl_reject_code"},
		{&p.mulRcpt, "multi_recipient_bounce_reject_code"},
	} {
		v, err := cfg.Int(c.name)
		if err != nil {
			return err
		}
		*c.dst = int(v)
	}
	for _, b := range []struct {
		dst  *bool
		name string
	}{
		{&p.delayReject, "smtpd_delay_reject"}, {&p.softBounce, "soft_bounce"},
		{&p.sasl, "smtpd_sasl_auth_enable"}, {&p.untrustedRoute, "allow_untrusted_routing"},
		{&p.rejectUnlistedSender, "smtpd_reject_unlisted_sender"},
		{&p.rejectUnlistedRecipient, "smtpd_reject_unlisted_recipient"},
	} {
		v, err := cfg.Bool(b.name)
		if err != nil {
			return err
		}
		*b.dst = v
	}
	p.heloTempfail = strings.TrimSpace(cfg.Get("unknown_helo_hostname_tempfail_action"))
	p.addrTempfail = strings.TrimSpace(cfg.Get("unknown_address_tempfail_action"))
	for _, a := range []struct{ name, v string }{{"unknown_helo_hostname_tempfail_action", p.heloTempfail}, {"unknown_address_tempfail_action", p.addrTempfail}} {
		switch a.v {
		case "defer_if_permit", "defer":
		default:
			return fmt.Errorf("parameter %s: unknown value %q (specify defer_if_permit or defer)", a.name, a.v)
		}
	}
	p.defRBLReply, _ = cfg.Raw("default_rbl_reply")
	p.expandFilter = config.Unescape(cfg.Get("smtpd_expansion_filter"))
	l.access = maps.AccessOptions{
		RecipientDelimiter: cfg.Get("recipient_delimiter"),
		NullKey:            cfg.Get("smtpd_null_access_lookup_key"),
	}
	for _, n := range config.SplitList(cfg.Get("parent_domain_matches_subdomains")) {
		if n == "smtpd_access_maps" {
			l.access.ParentMatchesSubdomains = true
		}
	}
	return nil
}

// openList opens a parameter's list of tables as one (the first table
// that has a key answers), or nil when the parameter is empty.
func openList(cfg *config.Config, param string, opts maps.Options) (maps.Table, error) {
	specs := config.SplitList(cfg.Get(param))
	if len(specs) == 0 {
		return nil, nil
	}
	var ts multiTable
	for _, s := range specs {
		t, err := maps.Open(s, opts)
		if err != nil {
			ts.Close()
			return nil, fmt.Errorf("parameter %s: %w", param, err)
		}
		ts.tables = append(ts.tables, t)
		ts.names = append(ts.names, s)
	}
	return &ts, nil
}

// multiTable is Postfix's maps(3): a list of tables searched in order.
type multiTable struct {
	tables []maps.Table
	names  []string
}

func (m *multiTable) Lookup(key string) (string, bool, error) {
	for i, t := range m.tables {
		v, ok, err := t.Lookup(key)
		if err != nil {
			return "", false, fmt.Errorf("%s: %w", m.names[i], err)
		}
		if ok {
			return v, true, nil
		}
	}
	return "", false, nil
}

func (m *multiTable) Pattern() bool { return false }

func (m *multiTable) Close() error {
	var err error
	for _, t := range m.tables {
		if e := t.Close(); e != nil && err == nil {
			err = e
		}
	}
	return err
}

// SetLog directs the restrictions' warnings and info records (see Log).
// Call it before the first Check; nil discards them.
func (l *Lists) SetLog(f Log) { l.logf = f }

func (l *Lists) warn(format string, args ...any) {
	if l.logf != nil {
		l.logf(true, fmt.Sprintf(format, args...))
	}
}

func (l *Lists) info(format string, args ...any) {
	if l.logf != nil {
		l.logf(false, fmt.Sprintf(format, args...))
	}
}

// Close releases the tables.
func (l *Lists) Close() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, t := range l.tables {
		keep(t.Close())
	}
	for _, t := range []maps.Table{l.rblReply, l.loginMaps, l.relayCerts} {
		if t != nil {
			keep(t.Close())
		}
	}
	if l.mynetworks != nil {
		keep(l.mynetworks.Close())
	}
	if l.permMX != nil {
		keep(l.permMX.Close())
	}
	if l.resolver != nil {
		keep(l.resolver.Close())
	}
	if l.unlisted != nil {
		keep(l.unlisted.Close())
	}
	if l.ownDNS && l.dns != nil {
		keep(l.dns.Close())
	}
	if l.policy != nil {
		keep(l.policy.Close())
	}
	return first
}

// Check implements smtpd.Policy for one command, keeping per SMTP
// session (by the View's DNS cache) what Postfix keeps between commands.
// With smtpd_delay_reject = yes, smtpd asks for the client, HELO and
// sender stages again at each RCPT (the View then names the recipient):
// those calls answer nothing, and the RCPT stage evaluates all four lists
// in Postfix's order, so that defer_if_permit raised by an earlier list
// turns a later permit into a deferral as smtpd_check_rcpt() does.
func (l *Lists) Check(ctx context.Context, stage smtpd.Stage, v *smtpd.View) (*smtpd.Decision, error) {
	return l.sessionFor(v.DNS).Check(ctx, stage, v)
}

// sessionFor returns the Session of the SMTP session whose DNS cache ds
// is (smtpd makes one per connection), so that with smtpd_delay_reject =
// no a defer_if_permit raised at CONNECT, HELO or MAIL still applies at
// RCPT. The entry goes away when the SMTP session's cache is collected;
// without a cache each command gets a fresh Session.
func (l *Lists) sessionFor(ds *dns.Session) *Session {
	if ds == nil {
		return l.NewSession(nil)
	}
	key := weak.Make(ds)
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.sessions[key]; ok {
		return s
	}
	if l.sessions == nil {
		l.sessions = map[weak.Pointer[dns.Session]]*Session{}
	}
	// no strong reference to ds: the entry must not keep it alive
	s := &Session{l: l}
	l.sessions[key] = s
	runtime.AddCleanup(ds, l.forget, key)
	return s
}

func (l *Lists) forget(key weak.Pointer[dns.Session]) {
	l.mu.Lock()
	delete(l.sessions, key)
	l.mu.Unlock()
}

// A Session evaluates the stages of one SMTP session in order and keeps
// what Postfix keeps between them: the defer_if_permit flag each of the
// client, HELO and sender stages raised. smtpd's Check makes a fresh one
// per command; the smtpd-check test driver keeps one per script.
type Session struct {
	l   *Lists
	dns *dns.Session
	// Standalone makes the Session behave as Postfix's smtpd_check test
	// program: smtpd_reject_unlisted_sender and
	// smtpd_reject_unlisted_recipient apply at the end of the sender and
	// recipient stages (smtpd does those itself), HOLD, DISCARD, FILTER
	// and REDIRECT are logged here (smtpd logs them from the Decision),
	// and those actions are not skipped in client and HELO restrictions.
	Standalone bool

	dipClient, dipHelo, dipSender bool
	dip                           pending
	// Fingerprint stands in for a TLS client certificate's fingerprint
	// when the View has no TLS (the smtpd_check "fingerprint" command).
	Fingerprint string
}

// NewSession starts a Session; ds is the DNS cache used when a View has
// no DNS session of its own, nil for a fresh one from the Lists' resolver.
func (l *Lists) NewSession(ds *dns.Session) *Session {
	return &Session{l: l, dns: ds}
}

// FlushDNS drops the session's DNS cache (smtpd_check's flush_dnsxl_cache).
func (s *Session) FlushDNS() {
	if s.dns != nil {
		s.dns.Flush()
	}
}

// Check evaluates one stage as smtpd_check_client(), _helo(), _mail(),
// _rcpt(), _etrn(), _data() and _eod() do. A Decision with a 4xx/5xx
// Reply refuses the command; its other fields carry access(5) actions.
// The error is nil: failures are answered as Postfix answers them (451
// 4.3.0 or 4.3.5), never as a silent permit.
func (s *Session) Check(ctx context.Context, stage smtpd.Stage, v *smtpd.View) (*smtpd.Decision, error) {
	if s.l.p.delayReject && v.Recipient != "" && (stage == smtpd.StageConnect || stage == smtpd.StageHelo || stage == smtpd.StageMail) {
		// smtpd_delay_reject: the RCPT stage evaluates these lists
		return nil, nil
	}
	e := &eval{s: s, l: s.l, ds: v.DNS, ctx: ctx, v: v, d: &smtpd.Decision{}, where: stage.String()}
	if e.ds == nil {
		if s.dns == nil {
			s.dns = s.l.dns.Session()
		}
		e.ds = s.dns
	}
	if v.Helo != "" {
		e.helo = strp(v.Helo)
	}
	if v.HasSender {
		e.sender = strp(v.Sender)
	}
	if v.Recipient != "" && (stage != smtpd.StageData && stage != smtpd.StageEndOfData || len(v.Recipients) <= 1) {
		e.recipient = strp(v.Recipient)
	}
	if (stage == smtpd.StageData || stage == smtpd.StageEndOfData) && len(v.Recipients) == 1 {
		e.recipient = strp(v.Recipients[0])
	}
	var st status
	switch stage {
	case smtpd.StageConnect:
		st = e.runClient()
	case smtpd.StageHelo:
		st = e.runHelo()
	case smtpd.StageMail:
		st = e.runMail()
	case smtpd.StageRcpt:
		if e.recipient == nil {
			return nil, nil
		}
		st = e.runRcpt()
	case smtpd.StageEtrn:
		e.etrn = strp(v.EtrnDomain)
		st = e.runEtrn()
	case smtpd.StageData, smtpd.StageEndOfData:
		st = e.runData(stage)
	}
	if st == rejected {
		return &smtpd.Decision{Reply: e.reply}, nil
	}
	if e.d.Hold || e.d.Discard || e.d.Filter != "" || e.d.Redirect != "" || len(e.d.Prepend) > 0 {
		return e.d, nil
	}
	return nil, nil
}
