// Package restrict evaluates the SMTP server's restriction lists
// (postconf(5) smtpd_client_restrictions ... smtpd_end_of_data_restrictions;
// SMTPD_ACCESS_README) for smtpd.
//
// This is the first slice: the restrictions that decide relaying — permit,
// reject, defer, permit_mynetworks, permit_sasl_authenticated,
// permit_auth_destination, reject_unauth_destination and
// defer_unauth_destination — enough for moat's defaults never to be an open
// relay. Access maps, DNS lists, HELO/sender/recipient syntax checks and
// policy servers are the access-control issue's; a restriction this version
// does not know is a configuration error at start-up, never a silent permit.
package restrict

import (
	"context"
	"fmt"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/matchlist"
	"moat/internal/resolve"
	"moat/internal/smtp"
	"moat/internal/smtpd"
)

// verdict is what one restriction says: nothing (go on), permit or a reply.
type verdict int

const (
	dunno verdict = iota
	permit
	refuse
)

// list is one restriction-list parameter, parsed once.
type list struct {
	param string
	names []string
}

// Lists holds one service's restriction lists and what they consult. It is
// an smtpd.Policy.
type Lists struct {
	client, helo, sender, relay, recipient, data, endOfData list
	mynetworks                                              *matchlist.List
	resolver                                                *resolve.Resolver

	rejectCode, deferCode, relayCode int64
}

// known reports the restrictions this slice evaluates.
func known(name string) bool {
	switch name {
	case "permit", "reject", "defer", "permit_mynetworks", "permit_sasl_authenticated",
		"permit_auth_destination", "reject_unauth_destination", "defer_unauth_destination":
		return true
	}
	return false
}

// relaySafe reports the restrictions Postfix requires in
// smtpd_relay_restrictions or smtpd_recipient_restrictions so that the
// server is not an open relay (postconf(5) smtpd_relay_restrictions;
// smtpd(8) refuses to start without one).
func relaySafe(name string) bool {
	switch name {
	case "reject_unauth_destination", "defer_unauth_destination", "reject", "defer", "defer_if_permit":
		return true
	}
	return false
}

// New reads the restriction lists of cfg (a service's view, with its -o
// overrides) and opens mynetworks and the address classes. A restriction
// this version cannot evaluate, or lists that would make an open relay,
// are errors naming the parameter, so the service fails closed at start.
func New(cfg *config.Config, opts maps.Options) (*Lists, error) {
	l := &Lists{}
	for _, p := range []struct {
		dst  *list
		name string
	}{
		{&l.client, "smtpd_client_restrictions"}, {&l.helo, "smtpd_helo_restrictions"},
		{&l.sender, "smtpd_sender_restrictions"}, {&l.relay, "smtpd_relay_restrictions"},
		{&l.recipient, "smtpd_recipient_restrictions"}, {&l.data, "smtpd_data_restrictions"},
		{&l.endOfData, "smtpd_end_of_data_restrictions"},
	} {
		names, err := cfg.List(p.name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		for i, n := range names {
			names[i] = strings.ToLower(n)
			if !known(names[i]) {
				return nil, fmt.Errorf("parameter %s: restriction %q is not available yet in this version of moat; remove it or wait for the access-control release", p.name, n)
			}
		}
		*p.dst = list{param: p.name, names: names}
	}
	if !l.relay.has(relaySafe) && !l.recipient.has(relaySafe) {
		return nil, fmt.Errorf("in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer or defer_if_permit (without one the server is an open relay)")
	}
	var err error
	for _, c := range []struct {
		dst  *int64
		name string
	}{{&l.rejectCode, "reject_code"}, {&l.deferCode, "defer_code"}, {&l.relayCode, "relay_domains_reject_code"}} {
		if *c.dst, err = cfg.Int(c.name); err != nil {
			return nil, err
		}
	}
	if l.mynetworks, err = matchlist.New(cfg, "mynetworks", matchlist.Addr, opts); err != nil {
		return nil, err
	}
	if l.resolver, err = resolve.New(cfg, opts); err != nil {
		l.mynetworks.Close()
		return nil, err
	}
	return l, nil
}

func (li list) has(pred func(string) bool) bool {
	for _, n := range li.names {
		if pred(n) {
			return true
		}
	}
	return false
}

// Close releases the tables.
func (l *Lists) Close() error {
	err := l.mynetworks.Close()
	if e := l.resolver.Close(); err == nil {
		err = e
	}
	return err
}

// Check implements smtpd.Policy. At RCPT, smtpd_relay_restrictions are
// evaluated before smtpd_recipient_restrictions, and a permit in one list
// ends that list only (postconf(5) smtpd_relay_before_recipient_restrictions).
func (l *Lists) Check(ctx context.Context, stage smtpd.Stage, v *smtpd.View) (*smtpd.Decision, error) {
	var lists []list
	switch stage {
	case smtpd.StageConnect:
		lists = []list{l.client}
	case smtpd.StageHelo:
		lists = []list{l.helo}
	case smtpd.StageMail:
		lists = []list{l.sender}
	case smtpd.StageRcpt:
		lists = []list{l.relay, l.recipient}
	case smtpd.StageData:
		lists = []list{l.data}
	case smtpd.StageEndOfData:
		lists = []list{l.endOfData}
	}
	for _, li := range lists {
		d, err := l.evaluate(li, stage, v)
		if d != nil || err != nil {
			return d, err
		}
	}
	return nil, nil
}

func (l *Lists) evaluate(li list, stage smtpd.Stage, v *smtpd.View) (*smtpd.Decision, error) {
	for _, name := range li.names {
		vd, reply, err := l.one(name, stage, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", li.param, name, err)
		}
		switch vd {
		case permit:
			return nil, nil
		case refuse:
			return &smtpd.Decision{Reply: reply}, nil
		}
	}
	return nil, nil
}

func (l *Lists) one(name string, stage smtpd.Stage, v *smtpd.View) (verdict, smtp.Reply, error) {
	switch name {
	case "permit":
		return permit, smtp.Reply{}, nil
	case "reject":
		return refuse, l.accessDenied(l.rejectCode, stage, v), nil
	case "defer":
		return refuse, l.accessDenied(l.deferCode, stage, v), nil
	case "permit_mynetworks":
		ok, err := l.mynetworks.Match("", v.ClientAddr)
		if ok {
			return permit, smtp.Reply{}, err
		}
		return dunno, smtp.Reply{}, err
	case "permit_sasl_authenticated":
		if v.SASLUser != "" {
			return permit, smtp.Reply{}, nil
		}
		return dunno, smtp.Reply{}, nil
	}
	// The destination restrictions apply to a recipient only; Postfix
	// ignores them at other stages.
	if stage != smtpd.StageRcpt {
		return dunno, smtp.Reply{}, nil
	}
	auth, err := l.authDestination(v.Recipient)
	if err != nil {
		return dunno, smtp.Reply{}, err
	}
	switch name {
	case "permit_auth_destination":
		if auth {
			return permit, smtp.Reply{}, nil
		}
	case "reject_unauth_destination", "defer_unauth_destination":
		if !auth {
			code := l.relayCode
			if name == "defer_unauth_destination" {
				// Postfix defers with the 4xx form of the relay code
				// (454 4.7.1 with the defaults).
				code = 454
			}
			return refuse, relayDenied(code, v.Recipient), nil
		}
	}
	return dunno, smtp.Reply{}, nil
}

// authDestination is Postfix's test for reject_unauth_destination: the
// recipient's domain is one this server delivers to or relays for
// (ADDRESS_CLASS_README), and the local part hides no further routing
// ("user@other@domain", "user%other", "host!user"), which a later hop might
// act on.
func (l *Lists) authDestination(rcpt string) (bool, error) {
	at := strings.LastIndexByte(rcpt, '@')
	local, domain := rcpt, ""
	if at >= 0 {
		local, domain = rcpt[:at], rcpt[at+1:]
	}
	if strings.ContainsAny(local, "@%!") {
		return false, nil
	}
	class, err := l.resolver.Domain(domain)
	if err != nil {
		return false, err
	}
	return class != resolve.Default, nil
}

// relayDenied is Postfix's reply for an unauthorized destination.
func relayDenied(code int64, rcpt string) smtp.Reply {
	return smtp.NewReply(int(code), enhanced(code, "7.1"), "<"+rcpt+">: Relay access denied")
}

// accessDenied is Postfix's reply for a plain reject or defer, worded for
// the stage as smtpd_check.c words it.
func (l *Lists) accessDenied(code int64, stage smtpd.Stage, v *smtpd.View) smtp.Reply {
	var what string
	switch stage {
	case smtpd.StageConnect:
		what = "<" + clientName(v) + "[" + v.ClientAddr.String() + "]>: Client host rejected"
	case smtpd.StageHelo:
		what = "<" + v.Helo + ">: Helo command rejected"
	case smtpd.StageMail:
		what = "<" + v.Sender + ">: Sender address rejected"
	case smtpd.StageRcpt:
		what = "<" + v.Recipient + ">: Recipient address rejected"
	case smtpd.StageData:
		what = "<DATA>: Data command rejected"
	default:
		what = "<END-OF-MESSAGE>: End-of-data rejected"
	}
	return smtp.NewReply(int(code), enhanced(code, "7.1"), what+": Access denied")
}

func clientName(v *smtpd.View) string {
	if v.ClientName == "" {
		return "unknown"
	}
	return v.ClientName
}

// enhanced gives an RFC 3463 code whose class matches the reply code.
func enhanced(code int64, detail string) string {
	return fmt.Sprintf("%d.%s", code/100, detail)
}
