package smtpdcheck

import (
	"context"

	"moat/internal/config"
	"moat/internal/dns"
	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/restrict"
	"moat/internal/smtpd"
)

// evaluator is one build of the restriction lists from one set of
// parameters — what an smtpd service would open at start-up — and the
// restriction session of the pretend SMTP session, with its DNS cache.
type evaluator struct {
	lists    *restrict.Lists
	resolver *dns.Resolver
	session  *restrict.Session
}

// newEvaluator opens what restrict needs under cfg, with warnings from
// tables, DNS and the restrictions going to log as a daemon's do. It uses
// restrict.NewStandalone, restrict's entry point for this driver: like
// Postfix's smtpd_check, it accepts lists that would make an open relay
// (every list starts empty), and its Session applies the implicit
// smtpd_reject_unlisted_* checks and logs HOLD/DISCARD/FILTER/REDIRECT
// itself, which smtpd does on its side.
func newEvaluator(cfg *config.Config, log *maillog.Logger) (*evaluator, error) {
	warn := func(msg string) { log.Warning("%s", msg) }
	mo, err := maps.DaemonOptions(cfg, warn)
	if err != nil {
		return nil, err
	}
	res, err := resolver(cfg, mo, log)
	if err != nil {
		return nil, err
	}
	lists, err := restrict.NewStandalone(cfg, mo, res)
	if err != nil {
		res.Close()
		return nil, err
	}
	lists.SetLog(func(warning bool, text string) {
		if warning {
			log.Warning("%s", text)
		} else {
			log.Info("%s", text)
		}
	})
	sess := lists.NewSession(res.Session())
	sess.Standalone = true
	return &evaluator{lists: lists, resolver: res, session: sess}, nil
}

// resolver builds the DNS resolver a daemon would (dns_servers,
// inet_protocols, smtpd_dns_reply_filter), adding the info-level records
// ("ignoring DNS RR: ...") that smtpd_check prints.
func resolver(cfg *config.Config, mo maps.Options, log *maillog.Logger) (*dns.Resolver, error) {
	o, err := dns.OptionsFromConfig(cfg, mo, func(msg string) { log.Warning("%s", msg) })
	if err != nil {
		return nil, err
	}
	o.Info = func(msg string) { log.Info("%s", msg) }
	r, err := dns.New(o)
	if err != nil && o.ReplyFilter != nil {
		o.ReplyFilter.Close()
	}
	return r, err
}

// check evaluates one stage; fingerprint is the script's pretend TLS
// client certificate ("" for none).
func (e *evaluator) check(ctx context.Context, st smtpd.Stage, v *smtpd.View, fingerprint string) (*smtpd.Decision, error) {
	e.session.Fingerprint = fingerprint
	return e.session.Check(ctx, st, v)
}

func (e *evaluator) flushDNS() {
	e.session.FlushDNS()
}

func (e *evaluator) close() error {
	err := e.lists.Close()
	if e2 := e.resolver.Close(); err == nil {
		err = e2
	}
	return err
}
