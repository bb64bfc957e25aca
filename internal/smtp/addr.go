package smtp

import "strings"

// Path is a MAIL FROM reverse-path or RCPT TO forward-path.
type Path struct {
	// Addr is the address in internal form: angle brackets, comments,
	// phrases and any source route removed, quoted strings unquoted
	// ("wietse venema"@porcupine.org becomes wietse venema@porcupine.org),
	// as Postfix's smtpd passes it to cleanup. "" is the null sender.
	Addr string
	// Raw is the token as the client sent it, for logs and for the ORCPT
	// default (RFC 3461 §4.2).
	Raw string
}

// Null reports the null reverse-path <> (RFC 5321 §4.5.5).
func (p Path) Null() bool { return p.Addr == "" }

// Local is the part of Addr before its last '@' (all of it if none).
func (p Path) Local() string {
	if i := strings.LastIndexByte(p.Addr, '@'); i >= 0 {
		return p.Addr[:i]
	}
	return p.Addr
}

// Domain is the part of Addr after its last '@', or "".
func (p Path) Domain() string {
	if i := strings.LastIndexByte(p.Addr, '@'); i >= 0 {
		return p.Addr[i+1:]
	}
	return ""
}

// ASCII reports whether Addr is all US-ASCII; a non-ASCII address needs the
// SMTPUTF8 parameter (RFC 6531 §3.4) when strict_smtputf8 is set.
func (p Path) ASCII() bool {
	for i := 0; i < len(p.Addr); i++ {
		if p.Addr[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Quoted returns Addr in external form, quoting a local part that is not
// a dot-string (RFC 5321 §4.1.2), as needed when relaying or in headers.
func (p Path) Quoted() string {
	local, domain := p.Local(), p.Domain()
	if !strings.Contains(p.Addr, "@") {
		domain = ""
	}
	if !isDotString(local) {
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(local); i++ {
			if local[i] == '"' || local[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(local[i])
		}
		b.WriteByte('"')
		local = b.String()
	}
	if strings.Contains(p.Addr, "@") {
		return local + "@" + domain
	}
	return local
}

func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return s == ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x80 && (c <= ' ' || strings.IndexByte(`()<>[]:;@\,"`, c) >= 0 || c == 0x7f) {
			return false
		}
	}
	return true
}

// rfc822 lexical token kinds for address extraction.
const (
	tkAtom = iota
	tkQuoted
	tkLiteral
	tkComment
	tkSpecial
)

type atok struct {
	kind int
	val  string // internal form: escapes removed, quotes stripped
}

// lexAddress splits text into RFC 822 tokens (RFC 822 §3.3), leniently:
// unclosed quotes, comments and literals run to the end of the text.
func lexAddress(s string) []atok {
	var toks []atok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case isSpace(c):
			i++
		case c == '(':
			depth := 0
			j := i
			for ; j < len(s); j++ {
				if s[j] == '\\' {
					j++
					continue
				}
				if s[j] == '"' {
					// A quoted string inside a comment is opaque, as
					// smtpd's tokenizer already treated it.
					for j++; j < len(s) && s[j] != '"'; j++ {
						if s[j] == '\\' {
							j++
						}
					}
					continue
				}
				if s[j] == '(' {
					depth++
				} else if s[j] == ')' {
					depth--
					if depth == 0 {
						j++
						break
					}
				}
			}
			if j > len(s) {
				j = len(s)
			}
			toks = append(toks, atok{tkComment, s[i:j]})
			i = j
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			toks = append(toks, atok{tkQuoted, b.String()})
			i = j + 1
		case c == '[':
			j := i + 1
			for ; j < len(s) && s[j] != ']'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
			}
			if j < len(s) {
				j++
			}
			toks = append(toks, atok{tkLiteral, s[i:j]})
			i = j
		case strings.IndexByte("<>@,;:.)", c) >= 0:
			// A stray ')' is kept as a special so that it is refused
			// below instead of stalling the atom scanner.
			toks = append(toks, atok{tkSpecial, s[i : i+1]})
			i++
		default:
			var b strings.Builder
			for i < len(s) {
				c = s[i]
				if isSpace(c) || strings.IndexByte(`()"[<>@,;:.`, c) >= 0 {
					break
				}
				if c == '\\' && i+1 < len(s) {
					i++
					c = s[i]
				}
				b.WriteByte(c)
				i++
			}
			toks = append(toks, atok{tkAtom, b.String()})
		}
	}
	return toks
}

// extractAddress finds the one address in a MAIL FROM / RCPT TO argument
// as Postfix's smtpd does with its RFC 822 parser: comments are dropped,
// "phrase <route-addr>" yields the route-addr, a source route
// (@a,@b:user@d, RFC 5321 §4.1.2 and Appendix C) is stripped, and quoted
// strings are unquoted. It reports whether the argument had anything besides
// the address (comments, phrases) and whether it was usable at all (exactly
// one address).
func extractAddress(raw string) (addr string, extra bool, ok bool) {
	var toks []atok
	for _, t := range lexAddress(raw) {
		if t.kind == tkComment {
			extra = true
			continue
		}
		toks = append(toks, t)
	}
	for {
		open := -1
		for i, t := range toks {
			if t.kind == tkSpecial && t.val == "<" {
				open = i
				break
			}
		}
		if open < 0 {
			break
		}
		depth, end := 0, -1
		for i := open; i < len(toks); i++ {
			if toks[i].kind != tkSpecial {
				continue
			}
			if toks[i].val == "<" {
				depth++
			} else if toks[i].val == ">" {
				depth--
				if depth == 0 {
					end = i
					break
				}
			}
		}
		if end < 0 {
			end = len(toks)
		}
		if open > 0 || end < len(toks)-1 {
			extra = true
			for i, t := range toks {
				if (i < open || i > end) && t.kind == tkSpecial && (t.val == "," || t.val == ";") {
					return "", extra, false // a list of addresses
				}
			}
		}
		toks = toks[open+1 : end]
	}
	// Source route: "@a,@b:" before the mailbox.
	if len(toks) > 0 && toks[0].kind == tkSpecial && toks[0].val == "@" {
		colon := -1
		for i, t := range toks {
			if t.kind == tkSpecial && t.val == ":" {
				colon = i
				break
			}
		}
		if colon < 0 {
			return "", extra, false
		}
		toks = toks[colon+1:]
	}
	var b strings.Builder
	for _, t := range toks {
		if t.kind == tkSpecial && strings.IndexByte("<>,;:)", t.val[0]) >= 0 {
			return "", extra, false
		}
		b.WriteString(t.val)
	}
	return b.String(), extra, true
}
