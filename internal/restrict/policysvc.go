package restrict

import (
	"strconv"

	"moat/internal/config"
	"moat/internal/maillog"
	"moat/internal/policy"
	"moat/internal/smtpd"
)

// policyServices are the check_policy_service endpoints of a service's
// lists, with their settings read at start-up, sharing one connection pool
// (SMTPD_POLICY_README).
type policyServices struct {
	cfg      *config.Config
	pool     *policy.Pool
	settings map[string]policy.Settings
}

func newPolicyServices(cfg *config.Config) *policyServices {
	return &policyServices{cfg: cfg, pool: policy.NewPool(), settings: map[string]policy.Settings{}}
}

// add reads an endpoint's settings (smtpd_policy_service_* and the
// endpoint's own {name=value} overrides), failing at start-up.
func (p *policyServices) add(endpoint string) error {
	if _, ok := p.settings[endpoint]; ok {
		return nil
	}
	s, err := policy.SettingsFromConfig(p.cfg, endpoint)
	if err != nil {
		return err
	}
	p.settings[endpoint] = s
	return nil
}

func (p *policyServices) Close() error { return p.pool.Close() }

// SetLogger sends the restrictions' warnings and info records, and the
// policy clients' "problem talking to server" warnings, to a daemon's
// log.
func (l *Lists) SetLogger(lg *maillog.Logger) {
	if lg == nil {
		l.logf = nil
		l.policy.pool.SetLog(nil)
		return
	}
	l.logf = func(warning bool, text string) {
		if warning {
			lg.Warning("%s", text)
		} else {
			lg.Info("%s", text)
		}
	}
	l.policy.pool.SetLog(lg)
}

// policyService is check_policy_service: the server's reply is an
// access(5) action, evaluated like a table result; no answer (the client
// has already fallen back to smtpd_policy_service_default_action) is
// "451 4.3.5 Server configuration problem" only when even that is
// missing.
func (e *eval) policyService(endpoint, rn, rc, defACL string) status {
	s, ok := e.l.policy.settings[endpoint]
	if !ok {
		// named only inside an access table's result
		var err error
		if s, err = policy.SettingsFromConfig(e.l.p.cfg, endpoint); err != nil {
			e.l.warn("%v", err)
			return e.configError()
		}
	}
	action, err := e.l.policy.pool.Client(s).Query(e.ctx, e.policyRequest())
	if err != nil || action == "" {
		return e.reject(false, 451, "4.3.5", "Server configuration problem")
	}
	return e.tableResult(endpoint, action, "policy query", rn, rc, defACL)
}

// policyRequest is the policy protocol request for the View, with the
// attributes smtpd sends at this stage.
func (e *eval) policyRequest() *policy.Request {
	v := e.v
	r := &policy.Request{
		ProtocolState:     e.where,
		ProtocolName:      v.Protocol,
		QueueID:           v.QueueID,
		ClientAddress:     addrText(v.ClientAddr),
		ClientName:        e.clientName(),
		ReverseClientName: e.reverseName(),
		Instance:          v.Instance,
		SASLMethod:        v.SASLMethod,
		SASLUsername:      v.SASLUser,
		SASLSender:        v.SASLSender,
		EtrnDomain:        v.EtrnDomain,
	}
	if r.ProtocolName == "" {
		r.ProtocolName = "SMTP"
	}
	if v.ClientPort != 0 {
		r.ClientPort = strconv.Itoa(int(v.ClientPort))
	}
	if v.ServerAddr.IsValid() {
		r.ServerAddress = addrText(v.ServerAddr)
		r.ServerPort = strconv.Itoa(int(v.ServerPort))
	}
	if e.helo != nil {
		r.HeloName = *e.helo
	}
	if e.sender != nil {
		r.Sender = *e.sender
	}
	if e.recipient != nil {
		r.Recipient = *e.recipient
	}
	if e.where == smtpd.StageData.String() || e.where == smtpd.StageEndOfData.String() {
		r.RecipientCount = len(v.Recipients)
	}
	if v.Size > 0 {
		r.Size = v.Size
	}
	if t := v.TLS; t != nil {
		r.EncryptionProtocol, r.EncryptionCipher, r.EncryptionKeysize = t.Protocol, t.Cipher, t.Bits
		if t.PeerVerified {
			r.CCertSubject, r.CCertIssuer = t.PeerSubject, t.PeerIssuer
			r.CCertFingerprint, r.CCertPubkeyFingerprint = t.CertFingerprint, t.KeyFingerprint
		}
	}
	return r
}
