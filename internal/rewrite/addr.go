package rewrite

import (
	"strings"

	"moat/internal/smtp"
)

// quoteAddr turns an internal-form address into the external form table
// keys are written in (quote_822_local(3)): a local part that is not a
// dot-atom is quoted, so "aa bb@x" is looked up as "\"aa bb\"@x".
func quoteAddr(internal string) string {
	return smtp.Path{Addr: internal}.Quoted()
}

// quoteLocal quotes a bare local part the same way; it may itself hold an
// "@" ("a@b"@example is looked up as "a@b").
func quoteLocal(local string) string {
	return strings.TrimSuffix(smtp.Path{Addr: local + "@x"}.Quoted(), "@x")
}

// unquoteAddr turns one external-form address from a table value into
// internal form: quotes removed from the local part, backslash escapes
// resolved, angle brackets and comments dropped (mail_addr_crunch(3)
// parses results as RFC 822 addresses).
func unquoteAddr(ext string) string {
	ext = strings.TrimSpace(ext)
	if strings.HasPrefix(ext, "<") && strings.HasSuffix(ext, ">") {
		ext = ext[1 : len(ext)-1]
	}
	var b strings.Builder
	inQuote := false
	for i := 0; i < len(ext); i++ {
		c := ext[i]
		switch {
		case c == '\\' && i+1 < len(ext):
			i++
			b.WriteByte(ext[i])
		case c == '"':
			inQuote = !inQuote
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// splitAddrs splits a table value into its addresses at commas and white
// space outside quotes, angle brackets and comments; comments are dropped.
// canonical(5) and virtual(5) results are "address, address, ...".
func splitAddrs(value string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	quote, angle, paren := false, false, 0
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch {
		case c == '\\' && i+1 < len(value):
			if paren == 0 {
				cur.WriteByte(c)
				cur.WriteByte(value[i+1])
			}
			i++
			continue
		case quote:
			if c == '"' {
				quote = false
			}
		case paren > 0:
			if c == '(' {
				paren++
			} else if c == ')' {
				paren--
			}
			continue
		case c == '"':
			quote = true
		case c == '(':
			paren++
			continue
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case !angle && (c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n'):
			flush()
			continue
		}
		cur.WriteByte(c)
	}
	flush()
	return out
}

// canon is trivial-rewrite(8)'s "local" rewriting context, which cleanup
// applies to every envelope address and mail_addr_crunch(3) to every table
// result: a bare user gets @$myorigin (append_at_myorigin), user@host gets
// .$mydomain (append_dot_mydomain).
type canon struct {
	atOrigin, dotDomain bool
	myorigin, mydomain  string
}

// apply canonicalizes an internal-form address; "" (the null sender) stays.
func (c canon) apply(addr string) string {
	if addr == "" {
		return addr
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		if !c.atOrigin || c.myorigin == "" {
			return addr
		}
		// rewrite_tree goes on to the .$mydomain step with the
		// appended origin, which matters when $myorigin has no dot.
		at = len(addr)
		addr += "@" + c.myorigin
	}
	domain := addr[at+1:]
	if c.dotDomain && c.mydomain != "" && domain != "" &&
		!strings.HasPrefix(domain, "[") && !strings.Contains(domain, ".") {
		return addr + "." + c.mydomain
	}
	return addr
}

// withExt puts an unmatched extension back into an address, before its
// domain (mail_addr_crunch(3)).
func withExt(addr, ext string) string {
	if ext == "" {
		return addr
	}
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return addr[:at] + ext + addr[at:]
	}
	return addr + ext
}
