// Package hostname validates host names and numeric addresses the way
// Postfix's valid_hostname(3) building blocks do. smtpd uses them for
// reject_invalid_helo_hostname, for address literals in envelope
// addresses, and wherever a name from the network is about to be logged
// or used as a lookup key. The checks are deliberately syntactic (RFC 952,
// RFC 1123 section 2.1, RFC 1035 section 2.3.4, RFC 4291 section 2.2): no
// DNS is consulted.
//
// Every check returns nil or an *Error whose text is exactly what Postfix
// logs after "warning: ", so log watchers and fail2ban filters keep
// working.
package hostname

import (
	"fmt"
	"strings"
)

// Length limits from RFC 1035 section 2.3.4, as Postfix applies them.
const (
	// MaxLabelLen is the longest label (the text between dots).
	MaxLabelLen = 63
	// MaxNameLen is the longest host name Postfix accepts.
	MaxNameLen = 255
)

// Error is a validation failure. Error() gives Postfix's diagnostic, such
// as "valid_hostname: misplaced hyphen: a.-b".
type Error struct {
	// Func names the Postfix routine the text comes from
	// (valid_hostname, valid_hostaddr, valid_ipv4_hostaddr,
	// valid_ipv6_hostaddr, valid_hostport).
	Func string
	// Text is the rest of the diagnostic.
	Text string
}

// Error returns "FUNC: TEXT", what Postfix logs after "warning: ".
func (e *Error) Error() string { return e.Func + ": " + e.Text }

// clip limits the echoed input as Postfix's "%.100s" does, so a hostile
// name cannot flood the log.
func clip(s string) string {
	if len(s) > 100 {
		return s[:100]
	}
	return s
}

func fail(fn, format string, args ...any) *Error {
	return &Error{Func: fn, Text: fmt.Sprintf(format, args...)}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlnum(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// Check reports whether name is a syntactically valid host name: labels
// of letters, digits, "_" (tolerated, as Postfix does, because real
// hosts use it) and inner hyphens, 1 to 63 bytes each, separated by
// single dots, no trailing dot, at most 255 bytes, and not all digits
// and dots (a numeric "name" would be confused with an address).
func Check(name string) error {
	const fn = "valid_hostname"
	if name == "" {
		return fail(fn, "empty hostname")
	}
	labelLen := 0
	numeric := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		last := i+1 == len(name)
		switch {
		case isAlnum(c) || c == '_':
			labelLen++
			if labelLen > MaxLabelLen {
				return fail(fn, "hostname label too long: %s", clip(name))
			}
			if !isDigit(c) {
				numeric = false
			}
		case c == '.':
			if labelLen == 0 || last {
				return fail(fn, "misplaced delimiter: %s", clip(name))
			}
			labelLen = 0
		case c == '-':
			numeric = false
			labelLen++
			if labelLen == 1 || last || name[i+1] == '.' {
				return fail(fn, "misplaced hyphen: %s", clip(name))
			}
		default:
			return fail(fn, "invalid character %d(decimal): %s", c, clip(name))
		}
	}
	if numeric {
		return fail(fn, "numeric hostname: %s", clip(name))
	}
	if len(name) > MaxNameLen {
		return fail(fn, "bad length %d for %s...", len(name), clip(name))
	}
	return nil
}

// Valid is Check(name) == nil.
func Valid(name string) bool { return Check(name) == nil }

// CheckAddr reports whether addr is a valid numeric address: IPv6 when it
// contains a colon, dotted-quad IPv4 otherwise (no brackets, no zone).
func CheckAddr(addr string) error {
	if addr == "" {
		return fail("valid_hostaddr", "empty address")
	}
	if strings.IndexByte(addr, ':') >= 0 {
		return CheckIPv6(addr)
	}
	return CheckIPv4(addr)
}

// ValidAddr is CheckAddr(addr) == nil.
func ValidAddr(addr string) bool { return CheckAddr(addr) == nil }

// CheckIPv4 reports whether addr is a dotted quad of four decimal octets
// 0-255. A first octet of 0 is refused except in 0.0.0.0, as Postfix
// does (0/8 is "this network", never a peer).
func CheckIPv4(addr string) error {
	const fn = "valid_ipv4_hostaddr"
	inOctet := false
	octets, val := 0, 0
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		switch {
		case isDigit(c):
			if !inOctet {
				inOctet, val = true, 0
				octets++
			}
			val = val*10 + int(c-'0')
			if val > 255 {
				return fail(fn, "invalid octet value: %s", clip(addr))
			}
		case c == '.':
			if !inOctet || i+1 == len(addr) {
				return fail(fn, "misplaced dot: %s", clip(addr))
			}
			if octets == 1 && val == 0 && strings.Trim(addr, "0.") != "" {
				return fail(fn, "bad initial octet value: %s", clip(addr))
			}
			inOctet = false
		default:
			return fail(fn, "invalid character %d(decimal): %s", c, clip(addr))
		}
	}
	if octets != 4 {
		return fail(fn, "invalid octet count: %s", clip(addr))
	}
	return nil
}

// CheckIPv6 reports whether addr has the form of RFC 4291 section 2.2:
// eight groups of one to four hex digits, or fewer with one "::", the last
// two groups optionally written as an IPv4 dotted quad. No zone index.
func CheckIPv6(addr string) error {
	const fn = "valid_ipv6_hostaddr"
	field := 0     // colons seen
	nullField := 0 // the field number at which "::" appeared, 0 if none
	groupLen := 0  // hex digits in the group just read
	for i := 0; ; {
		if i == len(addr) {
			if field < 2 {
				return fail(fn, "too few `:' in IPv6 address: %s", clip(addr))
			}
			if groupLen == 0 && nullField != field-1 {
				return fail(fn, "bad null last field in IPv6 address: %s", clip(addr))
			}
			return nil
		}
		switch c := addr[i]; {
		case c == '.':
			if field < 2 || field > 6 {
				return fail(fn, "malformed IPv4-in-IPv6 address: %s", clip(addr))
			}
			return CheckIPv4(addr[i-groupLen:])
		case c == ':':
			if field == 0 && groupLen == 0 && i+1 < len(addr) && isAlnum(addr[i+1]) {
				return fail(fn, "bad null first field in IPv6 address: %s", clip(addr))
			}
			field++
			if field > 7 {
				return fail(fn, "too many `:' in IPv6 address: %s", clip(addr))
			}
			i++
			groupLen = 0
			if i < len(addr) && addr[i] == ':' {
				if nullField > 0 {
					return fail(fn, "too many `::' in IPv6 address: %s", clip(addr))
				}
				nullField = field
			}
		default:
			n := 0
			for i+n < len(addr) && isHex(addr[i+n]) {
				n++
			}
			if n > 4 {
				return fail(fn, "malformed IPv6 address: %s", clip(addr))
			}
			if n == 0 {
				return fail(fn, "invalid character %d(decimal) in IPv6 address: %s", c, clip(addr))
			}
			groupLen = n
			i += n
		}
	}
}

func isHex(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// CheckPort reports whether s is a decimal TCP/UDP port number 0-65535
// without leading zeros (Postfix's valid_hostport).
func CheckPort(s string) error {
	const fn = "valid_hostport"
	if len(s) > 1 && s[0] == '0' {
		return fail(fn, "leading zero in port number: %s", clip(s))
	}
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return fail(fn, "non-numeric port number: %s", clip(s))
	}
	if len(s) > 5 || s > "65535" && len(s) == 5 {
		return fail(fn, "out-of-range port number: %s", clip(s))
	}
	return nil
}

// NumericTLD reports whether the last label of name is all digits, as in
// "host.123". Postfix accepts such names (only an all-numeric name is
// refused); RFC 3696 section 2 says a top-level domain is never numeric,
// so a caller that wants the stricter rule can add this check.
func NumericTLD(name string) bool {
	tld := name[strings.LastIndexByte(name, '.')+1:]
	return tld != "" && strings.Trim(tld, "0123456789") == ""
}
