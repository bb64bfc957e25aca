package smtpd

import (
	"errors"
	"fmt"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/resolve"
	"moat/internal/rewrite"
	"moat/internal/smtp"
)

// Unlisted is smtpd's refusal of addresses that no table knows, Postfix's
// check_rcpt_maps() behind smtpd_reject_unlisted_recipient (default yes)
// and smtpd_reject_unlisted_sender (default no), postconf(5): an address
// in a local domain must be in local_recipient_maps, one in a virtual
// alias domain in virtual_alias_maps, one in a virtual mailbox domain in
// virtual_mailbox_maps, one in a relay domain in relay_recipient_maps (an
// empty local, virtual mailbox or relay list means "do not check"); an
// address that a canonical or virtual alias table knows is always
// accepted. Refusing at RCPT spares the queue the bounces it would
// otherwise send to forged senders (LOCAL_RECIPIENT_README).
//
// It is safe for concurrent use.
type Unlisted struct {
	rejectRcpt, rejectSender bool

	res  *resolve.Resolver
	find *rewrite.Finder

	rcptCanon, senderCanon, canonical, virtual *rewrite.Maps
	local, vmailbox, relay                     *rewrite.Maps
	// whether the parameter is set at all (Postfix tests the string:
	// a list whose only table is skipped still checks)
	localSet, vmailboxSet, relaySet bool

	localCode, aliasCode, mailboxCode, relayCode int
	showTable                                    bool
	atOrigin                                     bool
	myorigin, doubleBounce                       string
}

// NewUnlisted reads the parameters and opens the tables with opts (whose
// ProxySocket lets a jailed smtpd reach proxy: tables such as the default
// "proxy:unix:passwd.byname $alias_maps"). When both checks are off it
// opens nothing and Check accepts everything.
func NewUnlisted(cfg *config.Config, opts maps.Options) (*Unlisted, error) {
	u := &Unlisted{}
	var err error
	if u.rejectRcpt, err = cfg.Bool("smtpd_reject_unlisted_recipient"); err != nil {
		return nil, fmt.Errorf("smtpd_reject_unlisted_recipient: %w", err)
	}
	if u.rejectSender, err = cfg.Bool("smtpd_reject_unlisted_sender"); err != nil {
		return nil, fmt.Errorf("smtpd_reject_unlisted_sender: %w", err)
	}
	// receive_override_options = no_unknown_recipient_checks turns off
	// both (INPUT_TRANSP_UNKNOWN_RCPT in check_rcpt_maps()).
	off, err := rewrite.OverrideOption(cfg, "no_unknown_recipient_checks")
	if err != nil {
		return nil, err
	}
	if off {
		u.rejectRcpt, u.rejectSender = false, false
	}
	if !u.rejectRcpt && !u.rejectSender {
		return u, nil
	}
	if err := u.open(cfg, opts); err != nil {
		u.Close()
		return nil, err
	}
	return u, nil
}

func (u *Unlisted) open(cfg *config.Config, opts maps.Options) error {
	var err error
	if u.res, err = resolve.New(cfg, opts); err != nil {
		return err
	}
	if u.find, err = rewrite.NewFinder(cfg, u.res); err != nil {
		return err
	}
	for _, m := range []struct {
		dst   **rewrite.Maps
		set   *bool
		param string
	}{
		{&u.rcptCanon, nil, "recipient_canonical_maps"},
		{&u.senderCanon, nil, "sender_canonical_maps"},
		{&u.canonical, nil, "canonical_maps"},
		{&u.virtual, nil, "virtual_alias_maps"},
		{&u.local, &u.localSet, "local_recipient_maps"},
		{&u.vmailbox, &u.vmailboxSet, "virtual_mailbox_maps"},
		{&u.relay, &u.relaySet, "relay_recipient_maps"},
	} {
		if *m.dst, err = rewrite.OpenMaps(cfg, m.param, opts); err != nil {
			return err
		}
		if m.set != nil {
			v, err := cfg.GetErr(m.param)
			if err != nil {
				return fmt.Errorf("%s: %w", m.param, err)
			}
			*m.set = strings.TrimSpace(v) != ""
		}
	}
	for _, c := range []struct {
		dst  *int
		name string
	}{
		{&u.localCode, "unknown_local_recipient_reject_code"},
		{&u.aliasCode, "unknown_virtual_alias_reject_code"},
		{&u.mailboxCode, "unknown_virtual_mailbox_reject_code"},
		{&u.relayCode, "unknown_relay_recipient_reject_code"},
	} {
		v, err := cfg.Int(c.name)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		if v < 400 || v > 599 {
			return fmt.Errorf("%s: %d is not a 4xx or 5xx reply code", c.name, v)
		}
		*c.dst = int(v)
	}
	if u.showTable, err = cfg.Bool("show_user_unknown_table_name"); err != nil {
		return fmt.Errorf("show_user_unknown_table_name: %w", err)
	}
	if u.atOrigin, err = cfg.Bool("append_at_myorigin"); err != nil {
		return fmt.Errorf("append_at_myorigin: %w", err)
	}
	u.myorigin, u.doubleBounce = u.find.MyOrigin, u.find.DoubleBounce
	return nil
}

// Close releases the tables.
func (u *Unlisted) Close() error {
	if u == nil {
		return nil
	}
	var errs []error
	for _, m := range []*rewrite.Maps{u.rcptCanon, u.senderCanon, u.canonical, u.virtual, u.local, u.vmailbox, u.relay} {
		errs = append(errs, m.Close())
	}
	if u.res != nil {
		errs = append(errs, u.res.Close())
	}
	return errors.Join(errs...)
}

// Recipient checks a RCPT TO address (internal form); shown is the address
// as the reply and log show it. nil means accept.
func (u *Unlisted) Recipient(addr, shown string) (*smtp.Reply, error) {
	if u == nil || !u.rejectRcpt {
		return nil, nil
	}
	return u.check(addr, shown, false)
}

// Sender checks a MAIL FROM address the same way; the null sender is
// never checked.
func (u *Unlisted) Sender(addr, shown string) (*smtp.Reply, error) {
	if u == nil || !u.rejectSender || addr == "" {
		return nil, nil
	}
	return u.check(addr, shown, true)
}

// check is check_rcpt_maps(). A lookup failure gives Postfix's "451 4.3.0
// <addr>: Temporary lookup failure" together with the error, for the log.
func (u *Unlisted) check(addr, shown string, sender bool) (*smtp.Reply, error) {
	what, dsn := "Recipient", "5.1.1"
	if sender {
		what, dsn = "Sender", "5.1.0"
	}
	retry := func(err error) (*smtp.Reply, error) {
		r := smtp.NewReply(451, "4.3.0", fmt.Sprintf("<%s>: Temporary lookup failure", shown))
		return &r, err
	}
	// trivial-rewrite's canonical form: a bare user is user@$myorigin.
	rcpt := addr
	if !strings.Contains(rcpt, "@") && u.atOrigin && u.myorigin != "" {
		rcpt += "@" + u.myorigin
	}
	domain := ""
	if at := strings.LastIndexByte(rcpt, '@'); at >= 0 {
		domain = rcpt[at+1:]
	}
	res, err := u.res.Resolve(domain)
	if err != nil {
		return retry(err)
	}
	known := []*rewrite.Maps{u.rcptCanon}
	if sender {
		known = append(known, u.senderCanon)
	}
	known = append(known, u.canonical, u.virtual)
	for _, m := range known {
		_, ok, err := u.find.Find(m, rcpt)
		if err != nil {
			return retry(err)
		}
		if ok {
			return nil, nil
		}
	}
	unknown := func(code int, table string) (*smtp.Reply, error) {
		text := "User unknown"
		if u.showTable {
			text += " in " + table
		}
		r := smtp.NewReply(code, dsn, fmt.Sprintf("<%s>: %s address rejected: %s", shown, what, text))
		return &r, nil
	}
	missing := func(m *rewrite.Maps) (bool, error) {
		_, ok, err := u.find.Find(m, rcpt)
		return !ok, err
	}
	var m *rewrite.Maps
	var code int
	var table string
	switch res.Class {
	case resolve.VirtualAlias:
		// trivial-rewrite sends these to the error transport: known
		// addresses were found in virtual_alias_maps above.
		return unknown(u.aliasCode, "virtual alias table")
	case resolve.Local:
		if !u.localSet || u.exempt(rcpt) {
			return nil, nil
		}
		m, code, table = u.local, u.localCode, "local recipient table"
	case resolve.VirtualMailbox:
		if !u.vmailboxSet {
			return nil, nil
		}
		m, code, table = u.vmailbox, u.mailboxCode, "virtual mailbox table"
	case resolve.RelayDomain:
		if !u.relaySet {
			return nil, nil
		}
		m, code, table = u.relay, u.relayCode, "relay recipient table"
	default:
		return nil, nil
	}
	miss, err := missing(m)
	if err != nil {
		return retry(err)
	}
	if miss {
		return unknown(code, table)
	}
	return nil, nil
}

// exempt lists the local addresses Postfix accepts without a table:
// double_bounce_sender (absorbed by the queue manager), postmaster and
// MAILER-DAEMON (RFC 5321 section 4.5.1; bounces come from the latter).
func (u *Unlisted) exempt(rcpt string) bool {
	at := strings.LastIndexByte(rcpt, '@')
	if at < 0 {
		return false
	}
	local := rcpt[:at]
	return strings.EqualFold(local, u.doubleBounce) || strings.EqualFold(local, "postmaster") ||
		strings.EqualFold(local, "MAILER-DAEMON")
}

// unlisted runs the unlisted-recipient check for one RCPT.
func (s *session) unlisted(addr, shown string) (*Decision, bool) {
	r, err := s.srv.d.Unlisted.Recipient(addr, shown)
	return s.unlistedDecision(r, err)
}

// unlistedSender runs the unlisted-sender check for the transaction's
// sender.
func (s *session) unlistedSender() (*Decision, bool) {
	if s.tx == nil {
		return nil, false
	}
	from := s.tx.mail.From
	r, err := s.srv.d.Unlisted.Sender(from.Addr, from.Quoted())
	return s.unlistedDecision(r, err)
}

func (s *session) unlistedDecision(r *smtp.Reply, err error) (*Decision, bool) {
	if err != nil {
		s.log.Warning("%s: %v", s.queueID(), err)
	}
	if r == nil {
		return nil, false
	}
	return &Decision{Reply: *r}, true
}

// discards reports a DISCARD action.
func (d *Decision) discards() bool { return d != nil && d.Discard }

// discarding reports whether the transaction's message will be discarded
// (an earlier DISCARD, or one among this command's decisions): Postfix
// skips the unlisted checks then (state->discard).
func (s *session) discarding(now []*Decision) bool {
	if s.tx != nil {
		for _, d := range s.tx.actions {
			if d.discards() {
				return true
			}
		}
	}
	for _, d := range now {
		if d.discards() {
			return true
		}
	}
	return false
}
