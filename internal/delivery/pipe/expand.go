package pipe

import (
	"errors"
	"fmt"
	"moat/internal/delivery"
	"strings"
	"unicode/utf8"
)

// perRcptMacro reports whether name makes an argument repeat once per
// recipient (pipe(8): "A command-line argument that contains ${recipient}
// expands to as many command-line arguments as there are recipients").
func perRcptMacro(name string) bool {
	switch name {
	case "recipient", "original_recipient", "user", "extension", "mailbox", "domain":
		return true
	}
	return false
}

// knownMacro reports whether pipe(8) expands name; any other name is a
// configuration error, as in pipe(8)'s parse_callback().
func knownMacro(name string) bool {
	if perRcptMacro(name) {
		return true
	}
	switch name {
	case "client_address", "client_helo", "client_hostname", "client_port",
		"client_protocol", "nexthop", "queue_id", "sasl_method",
		"sasl_sender", "sasl_username", "sender", "size":
		return true
	}
	return false
}

// segment is a literal run of an argument or, when macro is set, one
// macro reference.
type segment struct {
	text  string
	macro bool
}

// argTemplate is one argv= argument split into literals and macros.
type argTemplate struct {
	segs    []segment
	perRcpt bool
	hasUser bool
}

// compileArg splits one argument into segments. pipe(8) recognizes ${name},
// $(name) (deprecated) and $name (letters, digits, underscore), and $$ for
// a single $. moat refuses what pipe(8) leaves ambiguous: a $ that starts no
// macro, an unclosed ${ or $(, and conditional forms such as ${name?text},
// which pipe(8) does not document (and its parser rejects as an unknown
// name).
func compileArg(s string) (argTemplate, error) {
	var t argTemplate
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.segs = append(t.segs, segment{text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 == len(s) {
			return t, fmt.Errorf("argument %q: $ at the end (write $$ for a literal $)", s)
		}
		var name string
		switch n := s[i+1]; {
		case n == '$':
			lit.WriteByte('$')
			i += 2
			continue
		case n == '{' || n == '(':
			closer := byte('}')
			if n == '(' {
				closer = ')'
			}
			end := strings.IndexByte(s[i+2:], closer)
			if end < 0 {
				return t, fmt.Errorf("argument %q: unclosed $%c", s, n)
			}
			name = s[i+2 : i+2+end]
			i += 2 + end + 1
		case isNameByte(n):
			j := i + 1
			for j < len(s) && isNameByte(s[j]) {
				j++
			}
			name = s[i+1 : j]
			i = j
		default:
			return t, fmt.Errorf("argument %q: $ not followed by a macro name (write $$ for a literal $)", s)
		}
		if !knownMacro(name) {
			return t, fmt.Errorf("argument %q: unknown macro name: %q", s, name)
		}
		flush()
		t.segs = append(t.segs, segment{text: name, macro: true})
		if perRcptMacro(name) {
			t.perRcpt = true
		}
		if name == "user" {
			t.hasUser = true
		}
	}
	flush()
	return t, nil
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func compileArgv(argv []string) ([]argTemplate, error) {
	if len(argv) == 0 {
		return nil, errors.New("missing argv= command-line attribute")
	}
	out := make([]argTemplate, 0, len(argv))
	for _, a := range argv {
		t, err := compileArg(a)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// rcptInfo is what one recipient contributes to the expansion.
type rcptInfo struct {
	address, orig string
}

// expandArgv builds the command line for one request: an argument with a
// per-recipient macro appears once per recipient (skipped for a recipient
// whose $user is empty, as pipe(8) does for cyrus bulletin boards), every
// other argument once. vars holds the request-wide macros.
func expandArgv(ts []argTemplate, vars map[string]string, rcpts []rcptInfo, flags int, sp splitter) []string {
	var out []string
	for _, t := range ts {
		if !t.perRcpt {
			out = append(out, t.expand(vars, nil))
			continue
		}
		for _, r := range rcpts {
			rv := rcptVars(r, flags, sp)
			if t.hasUser && rv["user"] == "" {
				continue
			}
			out = append(out, t.expand(vars, rv))
		}
	}
	return out
}

func (t argTemplate) expand(vars, rv map[string]string) string {
	var b strings.Builder
	for _, s := range t.segs {
		switch {
		case !s.macro:
			b.WriteString(s.text)
		case perRcptMacro(s.text):
			b.WriteString(rv[s.text])
		default:
			b.WriteString(vars[s.text])
		}
	}
	return b.String()
}

// rcptVars computes one recipient's macros as pipe(8)'s expand_argv()
// does: $recipient and $original_recipient take the q, h and u flags;
// $user, $extension, $mailbox and $domain only the h and u folding.
func rcptVars(r rcptInfo, flags int, sp splitter) map[string]string {
	fold := flags & (flagFoldHost | flagFoldUser)
	orig := r.orig
	if orig == "" {
		orig = r.address
	}
	bare := morph(r.address, fold)
	local, domain := bare, ""
	if at := strings.LastIndexByte(bare, '@'); at >= 0 {
		local, domain = bare[:at], bare[at+1:]
	}
	user, ext := local, ""
	if u, e, ok := sp.split(local); ok {
		user, ext = u, e
	}
	return map[string]string{
		"recipient":          morph(r.address, flags),
		"original_recipient": morph(orig, flags),
		"user":               user,
		"extension":          ext,
		"mailbox":            local,
		"domain":             domain,
	}
}

// morph quotes (q) and case-folds (u: local part, h: domain) an address
// for the command line, as pipe(8)'s morph_recipient(). An address
// without @ is all local part.
func morph(addr string, flags int) string {
	if flags&flagQuote != 0 {
		addr = quoteLocal(addr)
	}
	local, domain, hasAt := addr, "", false
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local, domain, hasAt = addr[:at], addr[at+1:], true
	}
	if flags&flagFoldUser != 0 {
		local = foldCase(local)
	}
	if flags&flagFoldHost != 0 {
		domain = foldCase(domain)
	}
	if !hasAt {
		return local
	}
	return local + "@" + domain
}

// splitter is the configuration of address extensions: recipient_delimiter
// (a set of characters), double_bounce_sender and owner_request_special.
type splitter struct {
	delim        string
	doubleBounce string
	ownerRequest bool
}

// split splits a local part at the first recipient_delimiter character,
// except where Postfix's split_addr() does not: the reserved names
// postmaster, mailer-daemon and double_bounce_sender, owner-foo and
// foo-request when "-" is a delimiter and owner_request_special is on, and
// a split that would leave an empty user.
func (sp splitter) split(local string) (user, ext string, ok bool) {
	delim := sp.delim
	if delim == "" {
		return local, "", false
	}
	if strings.EqualFold(local, "postmaster") || strings.EqualFold(local, "mailer-daemon") ||
		strings.EqualFold(local, sp.doubleBounce) {
		return local, "", false
	}
	if sp.ownerRequest && strings.Contains(delim, "-") {
		l := strings.ToLower(local)
		if strings.HasPrefix(l, "owner-") || len(l) > 8 && strings.HasSuffix(l, "-request") {
			return local, "", false
		}
	}
	i := strings.IndexAny(local, delim)
	if i <= 0 {
		return local, "", false
	}
	return local[:i], local[i+1:], true
}

// foldCase lower-cases s: Unicode case folding for UTF-8 text (Postfix
// 3.x casefold() with smtputf8_enable), ASCII only for other bytes so an
// address that is not UTF-8 keeps its bytes.
func foldCase(s string) string {
	if utf8.ValidString(s) {
		return strings.ToLower(s)
	}
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// quoteLocal quotes an address's local part when it is not an RFC 5322
// dot-atom (section 3.4.1), as Postfix's quote_822_local(): inside the
// quotes, " and \ get a backslash. 8-bit bytes count as atext (RFC 6532).
// An empty local part before an @ becomes "".
func quoteLocal(addr string) string {
	local, rest := addr, ""
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local, rest = addr[:at], addr[at:]
	}
	if delivery.IsDotAtom(local) {
		return addr
	}
	return delivery.QuoteLocal(local) + rest
}
