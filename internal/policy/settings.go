// Package policy is the client half of Postfix's SMTP access policy
// delegation protocol (SMTPD_POLICY_README; postconf(5)
// check_policy_service and smtpd_policy_service_*): smtpd sends one request
// of name=value lines ending in an empty line, the policy server answers with
// "action=..." and an empty line, and the action is an access(5) action that
// the restriction code evaluates. Connections are reused across requests and
// sessions, as Postfix's smtpd reuses its one connection per policy server.
package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"moat/internal/config"
)

// Settings are one policy server's client settings: the endpoint as written
// after check_policy_service and the smtpd_policy_service_* parameters
// (postconf(5)), possibly overridden per server with Postfix 3.0's
// "check_policy_service { endpoint, name=value, ... }" form. Settings is
// comparable: Pool keys its clients by it.
type Settings struct {
	// Endpoint is "inet:host:port", "unix:/path" or "unix:relative/path"
	// (relative to the working directory, which is the queue directory
	// for a daemon, or the jail root in a chroot: Postfix's
	// "unix:private/policy"). A bare "host:port" or path without a
	// transport is refused, as Postfix's auto_clnt refuses it.
	Endpoint string
	// Timeout bounds connecting, writing the request and reading the reply
	// (smtpd_policy_service_timeout).
	Timeout time.Duration
	// MaxIdle closes a connection unused for this long
	// (smtpd_policy_service_max_idle).
	MaxIdle time.Duration
	// MaxTTL closes a connection this long after it was opened, between
	// requests (smtpd_policy_service_max_ttl).
	MaxTTL time.Duration
	// TryLimit is the number of attempts per request
	// (smtpd_policy_service_try_limit, > 0).
	TryLimit int
	// RequestLimit closes a connection after this many requests; 0 means
	// no limit (smtpd_policy_service_request_limit).
	RequestLimit int
	// RetryDelay is the pause between attempts
	// (smtpd_policy_service_retry_delay).
	RetryDelay time.Duration
	// DefaultAction is what Query returns when every attempt failed
	// (smtpd_policy_service_default_action).
	DefaultAction string
	// Context is sent as the policy_context attribute
	// (smtpd_policy_service_policy_context).
	Context string
	// CompatibilityLevel and MailVersion are sent as the
	// compatibility_level and mail_version attributes, as Postfix 3.8
	// and later send them (3.7 does not; policy servers ignore
	// attributes they do not know, SMTPD_POLICY_README).
	CompatibilityLevel, MailVersion string
}

// SettingsFromConfig builds the settings for the check_policy_service
// argument endpoint from cfg's smtpd_policy_service_* parameters (a
// service's -o view when given one). endpoint is either a plain endpoint or
// Postfix 3.0's braced form "{ inet:host:port, timeout=10s,
// default_action=DUNNO }" whose options override the parameters: timeout,
// max_idle, max_ttl, retry_delay, try_limit, request_limit, default_action
// and policy_context (smtpd_check.c policy_client_register). An option value
// with spaces is written inside its own braces: "{ default_action = 450 4.7.1
// Try later }".
func SettingsFromConfig(cfg *config.Config, endpoint string) (Settings, error) {
	var s Settings
	var err error
	dur := func(name string) time.Duration {
		if err != nil {
			return 0
		}
		var d time.Duration
		d, err = cfg.Duration(name)
		return d
	}
	num := func(name string) int {
		if err != nil {
			return 0
		}
		var n int64
		n, err = cfg.Int(name)
		return int(n)
	}
	s.Timeout = dur("smtpd_policy_service_timeout")
	s.MaxIdle = dur("smtpd_policy_service_max_idle")
	s.MaxTTL = dur("smtpd_policy_service_max_ttl")
	s.RetryDelay = dur("smtpd_policy_service_retry_delay")
	s.TryLimit = num("smtpd_policy_service_try_limit")
	s.RequestLimit = num("smtpd_policy_service_request_limit")
	if err != nil {
		return Settings{}, fmt.Errorf("check_policy_service %s: %w", endpoint, err)
	}
	s.DefaultAction = cfg.Get("smtpd_policy_service_default_action")
	s.Context = cfg.Get("smtpd_policy_service_policy_context")
	s.CompatibilityLevel = cfg.Get("compatibility_level")
	s.MailVersion = cfg.Get("mail_version")
	if err := s.applyEndpoint(endpoint); err != nil {
		return Settings{}, fmt.Errorf("check_policy_service %s: %w", endpoint, err)
	}
	if err := s.validate(); err != nil {
		return Settings{}, fmt.Errorf("check_policy_service %s: %w", endpoint, err)
	}
	return s, nil
}

// applyEndpoint sets Endpoint from a plain or braced check_policy_service
// argument, applying the braced form's options.
func (s *Settings) applyEndpoint(arg string) error {
	arg = strings.TrimSpace(arg)
	if !strings.HasPrefix(arg, "{") {
		s.Endpoint = arg
		return nil
	}
	if !strings.HasSuffix(arg, "}") {
		return fmt.Errorf("policy service syntax error: missing '}'")
	}
	elems := config.SplitList(arg[1 : len(arg)-1])
	if len(elems) == 0 {
		return fmt.Errorf("empty policy service")
	}
	s.Endpoint = elems[0]
	for _, e := range elems[1:] {
		if strings.HasPrefix(e, "{") {
			if !strings.HasSuffix(e, "}") {
				return fmt.Errorf("policy service syntax error in %q: missing '}'", e)
			}
			e = e[1 : len(e)-1]
		}
		name, value, ok := strings.Cut(e, "=")
		if !ok {
			return fmt.Errorf("missing '=' after attribute name: %q", strings.TrimSpace(e))
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if err := s.override(name, value); err != nil {
			return err
		}
	}
	return nil
}

// override applies one per-policy option (Postfix's attr_override tables in
// smtpd_check.c: time, integer and string options).
func (s *Settings) override(name, value string) error {
	var d *time.Duration
	var n *int
	switch name {
	case "timeout":
		d = &s.Timeout
	case "max_idle":
		d = &s.MaxIdle
	case "max_ttl":
		d = &s.MaxTTL
	case "retry_delay":
		d = &s.RetryDelay
	case "try_limit":
		n = &s.TryLimit
	case "request_limit":
		n = &s.RequestLimit
	case "default_action":
		s.DefaultAction = value
		return nil
	case "policy_context":
		s.Context = value
		return nil
	default:
		return fmt.Errorf("unknown attribute name %q", name)
	}
	if d != nil {
		v, err := config.ParseDuration(value, 's')
		if err != nil {
			return fmt.Errorf("%s=%s: %w", name, value, err)
		}
		*d = v
		return nil
	}
	v, err := strconv.Atoi(value)
	if err != nil {
		return fmt.Errorf("%s=%s: bad numerical value", name, value)
	}
	*n = v
	return nil
}

// validate enforces postconf(5)'s ranges: non-zero times, try_limit > 0,
// request_limit >= 0, and an endpoint with a transport Postfix knows.
func (s *Settings) validate() error {
	if _, _, err := s.dialTarget(); err != nil {
		return err
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"timeout", s.Timeout}, {"max_idle", s.MaxIdle}, {"max_ttl", s.MaxTTL}, {"retry_delay", s.RetryDelay}} {
		if v.d <= 0 {
			return fmt.Errorf("%s must be greater than zero", v.name)
		}
	}
	if s.TryLimit <= 0 {
		return fmt.Errorf("try_limit must be greater than zero")
	}
	if s.RequestLimit < 0 {
		return fmt.Errorf("request_limit must not be negative")
	}
	if strings.TrimSpace(s.DefaultAction) == "" {
		return fmt.Errorf("default_action must not be empty")
	}
	return nil
}

// dialTarget splits Endpoint into Go's network and address. "inet:" takes
// host:port (an IPv6 host in brackets, as Postfix writes it), "unix:" and
// "local:" a socket path.
func (s *Settings) dialTarget() (network, address string, err error) {
	transport, rest, ok := strings.Cut(s.Endpoint, ":")
	if !ok || transport == "" || rest == "" {
		return "", "", fmt.Errorf("need service transport:endpoint instead of %q", s.Endpoint)
	}
	switch transport {
	case "inet":
		host, port, ok := cutLast(rest, ':')
		if !ok || host == "" || port == "" {
			return "", "", fmt.Errorf("bad inet endpoint %q: need host:port", s.Endpoint)
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if strings.ContainsAny(host, "[]") {
			return "", "", fmt.Errorf("bad inet endpoint %q", s.Endpoint)
		}
		if strings.Contains(host, ":") {
			return "tcp", "[" + host + "]:" + port, nil
		}
		return "tcp", host + ":" + port, nil
	case "unix", "local":
		return "unix", rest, nil
	}
	return "", "", fmt.Errorf("unsupported transport type %q in %q", transport, s.Endpoint)
}

// serverName is the endpoint as Postfix's attr_clnt names it in warnings:
// without the transport prefix ("127.0.0.1:10023", "private/policy").
func (s *Settings) serverName() string {
	if _, rest, ok := strings.Cut(s.Endpoint, ":"); ok {
		return rest
	}
	return s.Endpoint
}

func cutLast(s string, sep byte) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}
