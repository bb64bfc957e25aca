package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Mode is a policy's mode (RFC 8461 §5): what a sending MTA does when an MX
// host fails the policy.
type Mode int

// The policy modes of RFC 8461 §3.2 (sts-policy-mode-value). The zero value
// is None, so a Policy that was never filled in asks for nothing.
const (
	// None: the domain has withdrawn MTA-STS (§8.3); deliver as without a
	// policy.
	None Mode = iota
	// Testing: deliver as without a policy, only report (log) failures.
	Testing
	// Enforce: use only MX hosts the policy lists, over TLS with a
	// certificate valid for the MX host name.
	Enforce
)

// String is the mode's name as a policy spells it.
func (m Mode) String() string {
	switch m {
	case Testing:
		return "testing"
	case Enforce:
		return "enforce"
	}
	return "none"
}

// MaxMaxAge is the largest max_age RFC 8461 §3.2 allows (one year); a
// larger value is clamped to it.
const MaxMaxAge = 31557600 * time.Second

// Policy is a domain's MTA-STS policy (RFC 8461 §3.2) and where it came from.
type Policy struct {
	// Domain is the policy domain (the next-hop domain), lower case.
	Domain string
	// ID is the TXT record's id the policy was fetched under (§3.1).
	ID string
	// Mode says whether the policy is enforced.
	Mode Mode
	// MX are the allowed MX host patterns, lower case, each a host
	// name or "*." and a domain (§4.1).
	MX []string
	// MaxAge is how long the policy may be kept after Fetched (§3.2,
	// at most MaxMaxAge).
	MaxAge time.Duration
	// Fetched is when the policy was fetched over HTTPS.
	Fetched time.Time
	// Text is the policy body as served, kept to persist and re-parse.
	Text string
}

// Enforce reports whether the agent must apply the policy: only matching
// MX hosts, each over TLS with a certificate valid for its name (§5). A nil
// policy enforces nothing.
func (p *Policy) Enforce() bool { return p != nil && p.Mode == Enforce }

// Expired reports whether the policy's max_age has passed at now (§5.1).
func (p *Policy) Expired(now time.Time) bool {
	return !now.Before(p.Fetched.Add(p.MaxAge))
}

// Match reports whether the MX host name mx is allowed by the policy (RFC
// 8461 §4.1): equal to a pattern, ignoring case and a trailing dot, or, for a
// pattern "*.example.com", one more label in front of "example.com"
// ("mail.example.com", not "example.com" nor "a.b.example.com").
func (p *Policy) Match(mx string) bool {
	if p == nil {
		return false
	}
	for _, pat := range p.MX {
		if MatchMX(pat, mx) {
			return true
		}
	}
	return false
}

// MatchMX matches one MX host name against one policy pattern (RFC 8461
// §4.1).
func MatchMX(pattern, mx string) bool {
	pattern = strings.ToLower(strings.TrimSuffix(pattern, "."))
	mx = strings.ToLower(strings.TrimSuffix(mx, "."))
	if mx == "" || pattern == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		first, parent, ok := strings.Cut(mx, ".")
		return ok && first != "" && parent == rest
	}
	return mx == pattern
}

// ParsePolicy parses a policy body (RFC 8461 §3.2, sts-policy-record):
// "key: value" lines ended by CRLF or LF. version must be STSv1, mode one of
// enforce, testing, none, max_age up to ten digits (a value above a year
// counts as a year), and modes enforce and testing need at least one mx.
// Unknown keys are ignored, as the RFC asks; of a repeated key other than mx
// the first counts. Blank lines are tolerated. The result has Mode, MX,
// MaxAge and Text set.
func ParsePolicy(text string) (*Policy, error) {
	p := &Policy{Text: text}
	var haveVersion, haveMode, haveAge bool
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		line = strings.TrimRight(line, " \t")
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("policy line %d: no \":\"", n+1)
		}
		value = strings.TrimLeft(value, " \t")
		switch key {
		case "version":
			if haveVersion {
				continue
			}
			if value != "STSv1" {
				return nil, fmt.Errorf("policy line %d: version %q is not STSv1", n+1, value)
			}
			haveVersion = true
		case "mode":
			if haveMode {
				continue
			}
			switch value {
			case "enforce":
				p.Mode = Enforce
			case "testing":
				p.Mode = Testing
			case "none":
				p.Mode = None
			default:
				return nil, fmt.Errorf("policy line %d: unknown mode %q", n+1, value)
			}
			haveMode = true
		case "max_age":
			if haveAge {
				continue
			}
			if len(value) == 0 || len(value) > 10 || strings.Trim(value, "0123456789") != "" {
				return nil, fmt.Errorf("policy line %d: bad max_age %q", n+1, value)
			}
			secs, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("policy line %d: max_age: %w", n+1, err)
			}
			p.MaxAge = time.Duration(min(secs, int64(MaxMaxAge/time.Second))) * time.Second
			haveAge = true
		case "mx":
			if !validPattern(value) {
				return nil, fmt.Errorf("policy line %d: bad mx pattern %q", n+1, value)
			}
			p.MX = append(p.MX, strings.ToLower(value))
		default:
			if !validExtName(key) || !validPolicyValue(value) {
				return nil, fmt.Errorf("policy line %d: malformed field %q", n+1, line)
			}
		}
	}
	switch {
	case !haveVersion:
		return nil, errors.New("policy: no version")
	case !haveMode:
		return nil, errors.New("policy: no mode")
	case !haveAge:
		return nil, errors.New("policy: no max_age")
	case p.Mode != None && len(p.MX) == 0:
		return nil, fmt.Errorf("policy: mode %s without mx", p.Mode)
	}
	return p, nil
}

// validPattern is sts-policy-mx-value: ["*."] Domain, Domain being RFC 5321
// sub-domains (letters, digits, inner hyphens) joined by dots.
func validPattern(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if !isAlnum(label[i]) && label[i] != '-' {
				return false
			}
		}
	}
	return true
}

// validPolicyValue is sts-policy-extension-value: visible characters
// (printable ASCII or UTF-8 beyond it) with blanks only between them.
func validPolicyValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
