package mtasts

import (
	"errors"
	"fmt"
	"strings"
)

// txtVersion begins every MTA-STS TXT record (RFC 8461 §3.1, sts-version,
// case-sensitive).
const txtVersion = "v=STSv1"

// IsSTSRecord reports whether a TXT record is an MTA-STS candidate: RFC 8461
// §3.1 discards records that do not begin with "v=STSv1" before counting
// them, so an SPF or verification record beside it does no harm. The version
// must be followed by a field delimiter (optionally after blanks) or nothing,
// so "v=STSv10" is not a candidate.
func IsSTSRecord(s string) bool {
	if !strings.HasPrefix(s, txtVersion) {
		return false
	}
	rest := strings.TrimLeft(s[len(txtVersion):], " \t")
	return rest == "" || rest[0] == ';'
}

// ParseTXT parses one MTA-STS TXT record (RFC 8461 §3.1, sts-text-record) and
// returns its id, the value that tells a cached policy from a newer one.
// Extension fields are checked for syntax and otherwise ignored, as the RFC
// asks; a missing, malformed or repeated id is an error, and the caller then
// treats the domain as having no policy.
func ParseTXT(s string) (id string, err error) {
	if !IsSTSRecord(s) {
		return "", errors.New(`TXT record does not begin with "v=STSv1;"`)
	}
	fields := strings.Split(s[len(txtVersion):], ";")
	// fields[0] is what lies between the version and the first ";":
	// only blanks.
	if strings.Trim(fields[0], " \t") != "" {
		return "", fmt.Errorf("TXT record: text after the version: %q", fields[0])
	}
	fields = fields[1:]
	for i, f := range fields {
		f = strings.Trim(f, " \t")
		if f == "" {
			// Only the last field may be empty (a trailing ";").
			if i == len(fields)-1 {
				continue
			}
			return "", errors.New("TXT record: empty field")
		}
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			return "", fmt.Errorf("TXT record: field %q has no \"=\"", f)
		}
		if name == "id" {
			if id != "" {
				return "", errors.New("TXT record: more than one id")
			}
			if !validID(value) {
				return "", fmt.Errorf("TXT record: bad id %q (1-32 letters and digits)", value)
			}
			id = value
			continue
		}
		if !validExtName(name) || !validExtValue(value) {
			return "", fmt.Errorf("TXT record: malformed field %q", f)
		}
	}
	if id == "" {
		return "", errors.New("TXT record: no id")
	}
	return id, nil
}

// validID is sts-id: 1*32(ALPHA / DIGIT).
func validID(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// validExtName is sts-ext-name (and sts-policy-extension-name):
// (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
func validExtName(s string) bool {
	if len(s) == 0 || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validExtValue is sts-ext-value: 1*(%x21-3A / %x3C / %x3E-7E), printable
// ASCII without ";", "=" or space.
func validExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
