// Package smtpclient is the client session Postfix's smtp(8) and lmtp(8)
// share (they are one program there too): the greeting and EHLO/LHLO
// handshake, the pipelined mail transaction (RFC 2920), per-recipient
// replies (RFC 2033 section 4.2 for LMTP), the RSET probe and connection
// cache, and the texts Postfix logs for every outcome. The agents in
// internal/delivery/smtp and internal/delivery/lmtp choose the servers
// and make the connections; this package talks to them.
//
// The handshake runs the greeting and EHLO, then STARTTLS (RFC 3207) when
// the connection's TLSPolicy asks for it, with a new EHLO after it, then
// AUTH (RFC 4954) when Settings.Auth is set.
package smtpclient

import (
	"fmt"
	"time"

	"moat/internal/config"
	"moat/internal/delivery"
	"moat/internal/maillog"
)

// Settings are a client's protocol parameters, read once from the
// service's view of main.cf (postconf(5) smtp_* or lmtp_*).
type Settings struct {
	// LMTP selects RFC 2033: LHLO instead of EHLO, and one reply per
	// accepted recipient after the body.
	LMTP bool
	// HeloName is smtp_helo_name or lmtp_lhlo_name, expanded.
	HeloName string
	// MyHostname is $myhostname, for the mail loop check: a server that
	// greets with our own name is ourselves (smtp_proto.c).
	MyHostname string
	// LineLimit is smtp_line_length_limit: longer lines are broken.
	LineLimit int
	// SkipGreeting5xx is smtp_skip_5xx_greeting: a 5xx greeting is taken
	// as 4xx, so the next MX host is tried and the mail is not bounced
	// because of one broken server.
	SkipGreeting5xx bool
	// Downgrade is the opposite of disable_mime_output_conversion: an
	// 8-bit message to a server without 8BITMIME is converted to
	// quoted-printable (RFC 6152 section 3).
	Downgrade bool
	// Timeouts, postconf(5) smtp_*_timeout; zero means none. Helo covers
	// the greeting and EHLO as smtp_helo_timeout does.
	Helo, Mail, Rcpt, DataInit, DataXfer, DataDone, Quit, RSET time.Duration

	// Auth is SMTP AUTH after EHLO (smtp_sasl_auth_enable); nil for none.
	Auth *Auth

	// Log receives warnings and the info lines of skipped servers.
	Log *maillog.Logger
	// Now is the clock.
	Now func() time.Time
}

// AgentSettings is ReadSettings for an agent: d.Config is the
// service's view of main.cf (its master.cf -o overrides included), and
// d.Log and d.Now become the session's log and clock.
func AgentSettings(d delivery.Deps, prefix string) (Settings, error) {
	if d.Config == nil {
		return Settings{}, fmt.Errorf("%s: no configuration", prefix)
	}
	s, err := ReadSettings(d.Config, prefix)
	if err != nil {
		return s, err
	}
	if d.Now != nil {
		s.Now = d.Now
	}
	s.Log = d.Log
	return s, nil
}

// ReadSettings reads the protocol parameters with prefix "smtp" or
// "lmtp"; the LMTP names differ where Postfix's do (lmtp_lhlo_name,
// lmtp_lhlo_timeout).
func ReadSettings(cfg *config.Config, prefix string) (Settings, error) {
	s := Settings{LMTP: prefix == "lmtp", MyHostname: cfg.Get("myhostname"), Now: time.Now}
	helo, heloTimeout := "smtp_helo_name", "smtp_helo_timeout"
	if s.LMTP {
		helo, heloTimeout = "lmtp_lhlo_name", "lmtp_lhlo_timeout"
	}
	s.HeloName = cfg.Get(helo)
	if s.HeloName == "" {
		s.HeloName = s.MyHostname
	}
	if s.HeloName == "" {
		return s, fmt.Errorf("%s: %s and myhostname are empty", prefix, helo)
	}
	limit, err := cfg.Int(prefix + "_line_length_limit")
	if err != nil {
		return s, fmt.Errorf("%s: %s_line_length_limit: %w", prefix, prefix, err)
	}
	s.LineLimit = int(max(limit, 0))
	if s.SkipGreeting5xx, err = cfg.Bool(prefix + "_skip_5xx_greeting"); err != nil {
		return s, fmt.Errorf("%s: %s_skip_5xx_greeting: %w", prefix, prefix, err)
	}
	noConv, err := cfg.Bool("disable_mime_output_conversion")
	if err != nil {
		return s, fmt.Errorf("%s: disable_mime_output_conversion: %w", prefix, err)
	}
	s.Downgrade = !noConv
	for _, p := range []struct {
		name string
		dst  *time.Duration
	}{
		{heloTimeout, &s.Helo},
		{prefix + "_mail_timeout", &s.Mail},
		{prefix + "_rcpt_timeout", &s.Rcpt},
		{prefix + "_data_init_timeout", &s.DataInit},
		{prefix + "_data_xfer_timeout", &s.DataXfer},
		{prefix + "_data_done_timeout", &s.DataDone},
		{prefix + "_quit_timeout", &s.Quit},
		{prefix + "_rset_timeout", &s.RSET},
	} {
		v, err := cfg.Duration(p.name)
		if err != nil {
			return s, fmt.Errorf("%s: %s: %w", prefix, p.name, err)
		}
		*p.dst = v
	}
	return s, nil
}

// ReadCache reads the connection cache parameters with prefix "smtp" or
// "lmtp". With *_connection_cache_on_demand every destination is cached
// (Postfix caches on demand, when the queue manager sees a backlog;
// moat's agent serves concurrent requests and reuses a connection
// whenever it has one idle); otherwise only the destinations listed in
// *_connection_cache_destinations, each turned into a cache key by key
// (entries it refuses are skipped). A nil Cache means no caching.
func ReadCache(cfg *config.Config, prefix string, quit time.Duration, key func(string) (string, bool)) (*Cache, error) {
	onDemand, err := cfg.Bool(prefix + "_connection_cache_on_demand")
	if err != nil {
		return nil, fmt.Errorf("%s: %s_connection_cache_on_demand: %w", prefix, prefix, err)
	}
	dests, err := cfg.List(prefix + "_connection_cache_destinations")
	if err != nil {
		return nil, fmt.Errorf("%s: %s_connection_cache_destinations: %w", prefix, prefix, err)
	}
	listed := make(map[string]bool, len(dests))
	for _, d := range dests {
		if k, ok := key(d); ok {
			listed[k] = true
		}
	}
	if !onDemand && len(listed) == 0 {
		return nil, nil
	}
	c := &Cache{Quit: quit, Enabled: func(k string) bool { return onDemand || listed[k] }}
	if c.Idle, err = cfg.Duration(prefix + "_connection_cache_time_limit"); err != nil {
		return nil, fmt.Errorf("%s: %s_connection_cache_time_limit: %w", prefix, prefix, err)
	}
	if c.Life, err = cfg.Duration(prefix + "_connection_reuse_time_limit"); err != nil {
		return nil, fmt.Errorf("%s: %s_connection_reuse_time_limit: %w", prefix, prefix, err)
	}
	n, err := cfg.Int(prefix + "_connection_reuse_count_limit")
	if err != nil {
		return nil, fmt.Errorf("%s: %s_connection_reuse_count_limit: %w", prefix, prefix, err)
	}
	c.Uses = int(max(n, 0))
	if c.Idle <= 0 {
		return nil, nil
	}
	return c, nil
}
