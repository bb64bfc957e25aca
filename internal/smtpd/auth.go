package smtpd

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"

	"moat/internal/cleanup"
	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/maps"
	"moat/internal/matchlist"
	"moat/internal/sasl"
	"moat/internal/smtp"
)

// authSettings are the SMTP AUTH parameters (postconf(5) smtpd_sasl_*,
// smtpd_tls_auth_only, broken_sasl_auth_clients), read once per service
// generation.
type authSettings struct {
	enable bool
	// backend is nil unless smtpd_sasl_auth_enable = yes.
	backend sasl.Backend
	// opts and tlsOpts are smtpd_sasl_security_options and
	// smtpd_sasl_tls_security_options: the mechanisms offered before and
	// after STARTTLS.
	opts, tlsOpts sasl.SecurityOptions
	tlsAuthOnly   bool
	broken        bool // broken_sasl_auth_clients: also "AUTH=MECH ..."
	header        bool // smtpd_sasl_authenticated_header
	service       string
	responseLimit int
	filter        []string // smtpd_sasl_mechanism_filter, lower case
	// exceptions is smtpd_sasl_exceptions_networks: clients not offered
	// AUTH in EHLO (they may still use it, as in Postfix).
	exceptions *matchlist.List
}

// authState is a session's login; zero until AUTH succeeds.
type authState struct {
	user, method string
}

// readAuthSettings reads the SASL parameters. With AUTH enabled it opens
// the backend (moat's password tables) now, before the daemon's jail.
func (s *Server) readAuthSettings(mo maps.Options) error {
	c := s.d.Config
	a := &s.set.auth
	var err error
	if a.enable, err = c.Bool("smtpd_sasl_auth_enable"); err != nil || !a.enable {
		return err
	}
	if typ := strings.TrimSpace(c.Get("smtpd_sasl_type")); typ == "cyrus" {
		// Postfix's default, which moat cannot run. Postfix built
		// without Cyrus stops here ("unsupported SASL server
		// implementation"); moat keeps the service up without AUTH,
		// which fails closed (no login, no relaying through
		// permit_sasl_authenticated), and says why.
		s.d.Log.Warning("smtpd_sasl_auth_enable = yes with smtpd_sasl_type = cyrus: moat has no Cyrus SASL; "+
			"set smtpd_sasl_type = dovecot or moat (docs/SASL.md); AUTH is not offered by service %s", s.d.Service)
		a.enable = false
		return nil
	}
	for _, p := range []struct {
		name string
		v    *bool
	}{{"smtpd_tls_auth_only", &a.tlsAuthOnly}, {"broken_sasl_auth_clients", &a.broken}, {"smtpd_sasl_authenticated_header", &a.header}} {
		if *p.v, err = c.Bool(p.name); err != nil {
			return err
		}
	}
	if a.opts, err = sasl.ParseSecurityOptions(c.Get("smtpd_sasl_security_options")); err != nil {
		return fmt.Errorf("smtpd_sasl_security_options: %w", err)
	}
	if a.tlsOpts, err = sasl.ParseSecurityOptions(c.Get("smtpd_sasl_tls_security_options")); err != nil {
		return fmt.Errorf("smtpd_sasl_tls_security_options: %w", err)
	}
	a.service = strings.TrimSpace(c.Get("smtpd_sasl_service"))
	n, err := c.Int("smtpd_sasl_response_limit")
	if err != nil {
		return err
	}
	a.responseLimit = int(n)
	if a.filter, err = parseMechFilter(c.Get("smtpd_sasl_mechanism_filter")); err != nil {
		return err
	}
	if a.exceptions, err = matchlist.New(c, "smtpd_sasl_exceptions_networks", matchlist.Host, mo); err != nil {
		return err
	}
	bo := mo
	if s.d.ProxySocket != "" {
		bo.ProxySocket = s.d.ProxySocket
	}
	if a.backend, err = sasl.FromConfig(c, bo); err != nil {
		return err
	}
	return nil
}

// closeAuth releases the backend and the exception list.
func (a *authSettings) close() error {
	var errs []error
	if a.backend != nil {
		errs = append(errs, a.backend.Close())
	}
	if a.exceptions != nil {
		errs = append(errs, a.exceptions.Close())
	}
	return errors.Join(errs...)
}

// parseMechFilter reads smtpd_sasl_mechanism_filter (postconf(5), Postfix
// 3.6): mechanism names, "!name" to exclude, and static:rest (or
// static:all) for everything not named before. Other table types are a
// configuration error: moat matches names only.
func parseMechFilter(v string) ([]string, error) {
	var out []string
	for _, w := range config.SplitList(v) {
		w = strings.ToLower(w)
		if strings.Contains(w, ":") && w != "static:rest" && w != "static:all" && w != "!static:rest" {
			return nil, fmt.Errorf("smtpd_sasl_mechanism_filter: %q: only mechanism names, !names and static:rest are supported", w)
		}
		out = append(out, w)
	}
	return out, nil
}

// filterAllows applies the mechanism filter: the first matching word
// decides; a name no word matches is not offered (a Postfix match list).
func (a *authSettings) filterAllows(mech string) bool {
	if len(a.filter) == 0 {
		return true
	}
	mech = strings.ToLower(mech)
	for _, w := range a.filter {
		neg := strings.HasPrefix(w, "!")
		w = strings.TrimPrefix(w, "!")
		if w == mech || w == "static:rest" || w == "static:all" {
			return !neg
		}
	}
	return false
}

// authMechs returns the mechanisms this session may use now: the backend's,
// filtered by the security options for a plain or an encrypted session and
// by smtpd_sasl_mechanism_filter; none without TLS under
// smtpd_tls_auth_only. encrypted asks as if TLS were active.
// An error means the backend could not be asked (Dovecot down); it has been
// logged.
func (s *session) authMechs(encrypted bool) ([]sasl.Mech, error) {
	a := &s.set.auth
	if !a.enable || (a.tlsAuthOnly && !encrypted) {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.set.timeout)
	defer cancel()
	ms, err := a.backend.Mechanisms(ctx)
	if err != nil {
		s.log.Warning("%s: %v", s.client, err)
		return nil, err
	}
	opts := a.opts
	if encrypted {
		opts = a.tlsOpts
	}
	var out []sasl.Mech
	for _, m := range opts.Filter(ms) {
		if a.filterAllows(m.Name) {
			out = append(out, m)
		}
	}
	return out, nil
}

// offerAuth adds EHLO's AUTH line (RFC 4954 §3) and, for
// broken_sasl_auth_clients, the old "AUTH=" form some Microsoft clients
// need; AUTH= on MAIL FROM is accepted once AUTH is offered.
func (s *session) offerAuth(offer func(keyword, line string) bool) {
	if !s.set.auth.enable || s.listMatch(s.set.auth.exceptions) {
		return
	}
	ms, _ := s.authMechs(s.tlsActive())
	if len(ms) == 0 {
		return
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	list := strings.Join(names, " ")
	if offer("AUTH", "AUTH "+list) {
		s.offered.Auth = true
		if s.set.auth.broken {
			offer("AUTH", "AUTH="+list)
		}
	}
}

// resetAuth forgets the login: STARTTLS must call it (RFC 3207 §4.2: the
// server discards what it learned from the client before TLS).
func (s *session) resetAuth() { s.auth = authState{} }

// authCmd is AUTH (RFC 4954 §4), with Postfix's replies (smtpd_sasl_proto.c)
// except where noted in docs/SASL.md.
func (s *session) authCmd(arg string) (bool, error) {
	a := &s.set.auth
	switch {
	case !a.enable:
		s.reply(smtp.NewReply(503, "5.5.1", "Error: authentication not enabled"))
		return false, nil
	case s.helo == "":
		s.reply(replyNeedHelo)
		return false, nil
	case s.auth.user != "":
		s.reply(smtp.NewReply(503, "5.5.1", "Error: already authenticated"))
		return false, nil
	case s.tx != nil:
		s.reply(smtp.NewReply(503, "5.5.1", "Error: MAIL transaction in progress"))
		return false, nil
	}
	f := strings.Fields(arg)
	if len(f) < 1 || len(f) > 2 {
		s.reply(smtp.NewReply(501, "5.5.4", "Syntax: AUTH mechanism"))
		return false, nil
	}
	mech := strings.ToUpper(f[0])
	encrypted := s.tlsActive()
	now, err := s.authMechs(encrypted)
	if err != nil {
		// Not the client's fault: a 454, and no "authentication failed"
		// line for fail2ban to ban an innocent client on.
		s.reply(smtp.NewReply(454, "4.7.0", "Temporary authentication failure: Can't connect to authentication server"))
		return false, nil
	}
	if !hasMech(now, mech) {
		if later, _ := s.authMechs(true); !encrypted && hasMech(later, mech) {
			// RFC 4954 §6's reply; Postfix 3.7 sends 504 5.5.4
			// with this text.
			s.reply(smtp.NewReply(538, "5.7.11", "Encryption required for requested authentication mechanism"))
			return false, nil
		}
		s.authFailed(mech, "", &sasl.Failure{Reason: "Invalid authentication mechanism"})
		return false, nil
	}
	if !s.anvilAuth() {
		return false, nil
	}
	var resp []byte
	if len(f) == 2 {
		var ok bool
		if resp, ok = decodeResponse(f[1]); !ok {
			s.reply(smtp.NewReply(501, "5.5.2", "Cannot decode response"))
			return false, nil
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.set.timeout)
	ex, err := a.backend.Start(ctx, mech, s.authConnInfo(encrypted))
	cancel()
	if errors.Is(err, sasl.ErrNoMech) {
		s.authFailed(mech, "", &sasl.Failure{Reason: "Invalid authentication mechanism"})
		return false, nil
	}
	if err != nil {
		s.log.Warning("%s: %v", s.client, err)
		s.reply(smtp.NewReply(454, "4.7.0", "Temporary authentication failure: Can't connect to authentication server"))
		return false, nil
	}
	defer ex.Close()
	for {
		// Each round trip to the backend gets smtpd_timeout, as each
		// read from the client does.
		ctx, cancel := context.WithTimeout(s.ctx, s.set.timeout)
		ch, done, err := ex.Step(ctx, resp)
		cancel()
		if err != nil {
			return s.authFailed(mech, ex.User(), err), nil
		}
		if done {
			break
		}
		s.reply(smtp.Reply{Code: 334, Lines: []string{base64.StdEncoding.EncodeToString(ch)}})
		s.flush()
		line, err := smtp.ReadCommand(s.br, a.responseLimit, s.bare, s.set.bareNewlineCode)
		if errors.Is(err, smtp.ErrLineTooLong) {
			s.reply(smtp.NewReply(500, "5.5.6", "SASL response limit exceeded"))
			return false, nil
		}
		if err != nil {
			return false, s.readError(err, 0)
		}
		if strings.TrimSpace(line) == "*" {
			s.log.Warning("%s: SASL %s authentication aborted", s.client, mech)
			s.reply(smtp.NewReply(501, "5.7.0", "Authentication aborted"))
			return false, nil
		}
		var ok bool
		if resp, ok = decodeResponse(strings.TrimSpace(line)); !ok {
			s.reply(smtp.NewReply(501, "5.5.2", "Cannot decode response"))
			return false, nil
		}
	}
	if ex.User() == "" {
		// A login without a name would look like no login at all to
		// the restrictions; refuse rather than guess.
		return s.authFailed(mech, "", &sasl.Failure{Reason: "no user name from the authentication server", Temporary: true}), nil
	}
	s.auth = authState{user: s.printable(ex.User()), method: mech}
	s.reply(smtp.NewReply(235, "2.7.0", "Authentication successful"))
	return true, nil
}

func hasMech(ms []sasl.Mech, name string) bool {
	for _, m := range ms {
		if m.Name == name {
			return true
		}
	}
	return false
}

// decodeResponse decodes a client response; "=" is the empty one (RFC 4954
// §4).
func decodeResponse(v string) ([]byte, bool) {
	if v == "=" {
		return []byte{}, true
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, false
	}
	return b, true
}

// authFailed logs Postfix's warning, which fail2ban's postfix-sasl filter
// bans on, and answers 535 (or 454 for a temporary failure).
func (s *session) authFailed(mech, user string, err error) bool {
	f := sasl.AsFailure(err)
	if f == nil {
		f = &sasl.Failure{Reason: err.Error(), Temporary: true}
	}
	reason := s.printable(f.Reason)
	text := maillog.SASLAuthFailed(s.client, mech, reason)
	if user != "" {
		text += ", sasl_username=" + s.printable(user)
	}
	s.log.Warning("%s", text)
	if f.Temporary {
		s.reply(smtp.NewReply(454, "4.7.0", "Temporary authentication failure: "+reason))
	} else {
		s.reply(smtp.NewReply(535, "5.7.8", "Error: authentication failed: "+reason))
	}
	return false
}

func (s *session) authConnInfo(encrypted bool) sasl.ConnInfo {
	ci := sasl.ConnInfo{Service: s.set.auth.service, ClientAddr: s.client.Addr, ClientPort: s.client.Port, Secured: encrypted}
	if ta, ok := s.conn.LocalAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		ci.LocalAddr, ci.LocalPort = ap.Addr().Unmap(), ap.Port()
	}
	return ci
}

// authClientInfo is the SASL part of the "client=" record.
func (s *session) authClientInfo() maillog.ClientInfo {
	ci := maillog.ClientInfo{SASLMethod: s.auth.method, SASLUsername: s.auth.user}
	if s.tx != nil && s.tx.mail.HasAuth && s.tx.mail.Auth != "<>" && s.auth.user != "" {
		ci.SASLSender = s.printable(s.tx.mail.Auth)
	}
	return ci
}

// authView fills the SASL fields restrictions and policy servers test
// (permit_sasl_authenticated, check_sasl_access, the policy protocol's
// sasl_* attributes).
func (s *session) authView(v *View) {
	v.SASLUser, v.SASLMethod = s.auth.user, s.auth.method
	if s.tx != nil && s.tx.mail.HasAuth && s.tx.mail.Auth != "<>" {
		v.SASLSender = s.tx.mail.Auth
	}
}

// authReceived adds the login to the Received: header: the "A" of RFC
// 3848's ESMTPA/ESMTPSA, and "(Authenticated sender: u)" when
// smtpd_sasl_authenticated_header = yes. startMessage calls it.
func (s *session) authReceived(ri *cleanup.ReceivedInfo) {
	if s.auth.user == "" {
		return
	}
	if strings.HasPrefix(ri.Protocol, "ESMTP") && !strings.HasSuffix(ri.Protocol, "A") {
		ri.Protocol += "A"
	}
	if s.set.auth.header {
		ri.AuthSender = s.auth.user
	}
}
