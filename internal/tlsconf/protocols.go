package tlsconf

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// protoNames are the names Postfix accepts in *_tls_protocols (postconf(5)
// smtpd_tls_protocols), in order, with Go's version numbers (0 for the SSL
// versions Go never spoke).
var protoNames = []struct {
	name string
	ver  uint16
}{
	{"SSLv2", 0}, {"SSLv3", 0}, {"TLSv1", tls.VersionTLS10},
	{"TLSv1.1", tls.VersionTLS11}, {"TLSv1.2", tls.VersionTLS12}, {"TLSv1.3", tls.VersionTLS13},
}

// protoIndex finds a protocol name (Postfix compares them case-
// insensitively).
func protoIndex(name string) int {
	for i, p := range protoNames {
		if strings.EqualFold(p.name, name) {
			return i
		}
	}
	return -1
}

// splitTokens splits a Postfix list on blanks, commas and colons, as
// tls_protocol_mask() and the cipher exclusion lists do.
func splitTokens(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool {
		return r == ' ' || r == '\t' || r == ',' || r == ':' || r == '\n' || r == '\r'
	})
}

// ParseProtocols reads a smtpd_tls_protocols value: names to include,
// "!name" to exclude, ">=name" and "<=name" bounds (Postfix 3.6 syntax). It
// returns which of protoNames are enabled; an unknown name is an error, as
// Postfix disables TLS on an invalid protocol list.
func ParseProtocols(v string) ([]bool, error) {
	n := len(protoNames)
	include := make([]bool, n)
	exclude := make([]bool, n)
	lo, hi := 0, n-1
	any := false
	for _, tok := range splitTokens(v) {
		var i int
		switch {
		case strings.HasPrefix(tok, ">="):
			if i = protoIndex(tok[2:]); i >= 0 && i > lo {
				lo = i
			}
		case strings.HasPrefix(tok, "<="):
			if i = protoIndex(tok[2:]); i >= 0 && i < hi {
				hi = i
			}
		case strings.HasPrefix(tok, "!"):
			if i = protoIndex(tok[1:]); i >= 0 {
				exclude[i] = true
			}
		default:
			if i = protoIndex(tok); i >= 0 {
				include[i] = true
				any = true
			}
		}
		if i < 0 {
			return nil, fmt.Errorf("invalid TLS protocol name %q", tok)
		}
	}
	on := make([]bool, n)
	for i := range on {
		on[i] = i >= lo && i <= hi && !exclude[i] && (!any || include[i])
	}
	return on, nil
}

// versionRange maps the enabled protocols onto crypto/tls's MinVersion and
// MaxVersion, raised to moat's floor of TLS 1.2 (RFC 8996 deprecates 1.0
// and 1.1). What cannot be expressed is reported in warnings.
func versionRange(param, v string) (min, max uint16, warnings []string, err error) {
	on, err := ParseProtocols(v)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("%s = %s: %w", param, v, err)
	}
	var below []string
	for i, p := range protoNames {
		if !on[i] {
			continue
		}
		if p.ver < tls.VersionTLS12 {
			below = append(below, p.name)
			continue
		}
		if min == 0 {
			min = p.ver
		}
		max = p.ver
	}
	if len(below) > 0 {
		warnings = append(warnings, fmt.Sprintf("%s: %s not offered: moat's floor is TLSv1.2 (RFC 8996)", param, strings.Join(below, ", ")))
	}
	if min == 0 {
		return 0, 0, warnings, fmt.Errorf("%s = %s: no protocol left at or above TLSv1.2", param, v)
	}
	return min, max, warnings, nil
}

// VersionName is the protocol as Postfix logs it (OpenSSL's
// SSL_get_version): "TLSv1.3".
func VersionName(v uint16) string {
	for _, p := range protoNames {
		if p.ver == v && v != 0 {
			return p.name
		}
	}
	return fmt.Sprintf("0x%04x", v)
}
