package sendmail

import "strings"

// maxAddresses bounds what one header or argument may yield, so a
// hostile header cannot make an unbounded recipient list.
const maxAddresses = 10000

// Addresses extracts the addresses of an RFC 5322 §3.4 address list (a
// To:/Cc:/Bcc: value, or a command-line recipient argument), leniently as
// Postfix's tok822 parser does rather than strictly as net/mail does: a
// bare "user" without a domain is an address (cron and PHP scripts send to
// local users so), comments are dropped, a group's name and its ";" are
// dropped, a source route in <@a,@b:user@c> is dropped, and unquoted
// blanks inside an address are removed. Quoted local parts lose their
// quotes, the envelope's internal form (as smtpd stores addresses too).
// Empty members ("undisclosed-recipients:;") give nothing.
func Addresses(list string) []string {
	var out []string
	var cur strings.Builder // the current member, comments removed
	depth := 0              // comment nesting
	inQuote, inAngle := false, false
	angle := -1 // where <...> content starts in cur, when seen
	var angleAddr string
	flush := func() {
		var a string
		if angle >= 0 {
			a = angleAddr
		} else {
			a = cur.String()
			// A group's display name ends at its colon: "team: a, b;".
			if i := unquotedIndex(a, ':'); i >= 0 {
				a = a[i+1:]
			}
			a = stripBlanks(a)
		}
		a = strings.TrimRight(a, ";")
		if i := unquotedIndex(a, ':'); i >= 0 && strings.HasPrefix(a, "@") {
			a = a[i+1:] // source route
		}
		a = internalize(a)
		if a != "" && len(out) < maxAddresses {
			out = append(out, a)
		}
		cur.Reset()
		angle, angleAddr = -1, ""
	}
	for i := 0; i < len(list); i++ {
		c := list[i]
		switch {
		case depth > 0:
			switch c {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
		case inQuote:
			cur.WriteByte(c)
			switch c {
			case '\\':
				if i+1 < len(list) {
					i++
					cur.WriteByte(list[i])
				}
			case '"':
				inQuote = false
			}
		case c == '"':
			inQuote = true
			cur.WriteByte(c)
		case c == '(':
			depth = 1
		case c == '<' && !inAngle:
			inAngle = true
			angle = cur.Len()
			cur.WriteByte(c)
		case c == '>' && inAngle:
			inAngle = false
			angleAddr = stripBlanks(cur.String()[angle+1:])
		case c == ',' && !inAngle:
			flush()
		case c == ';' && !inAngle:
			flush()
		case c == ':' && !inAngle && angle < 0 && !strings.HasPrefix(strings.TrimSpace(cur.String()), "@"):
			// End of a group's display name: what came before is a name.
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if inAngle && angle >= 0 {
		angleAddr = stripBlanks(cur.String()[angle+1:])
	}
	flush()
	return out
}

// unquotedIndex finds c outside quoted strings.
func unquotedIndex(s string, c byte) int {
	q := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q:
			i++
		case s[i] == '"':
			q = !q
		case s[i] == c && !q:
			return i
		}
	}
	return -1
}

// stripBlanks removes blanks outside quoted strings ("user @ example.com"
// is user@example.com, as tok822 joins the tokens).
func stripBlanks(s string) string {
	var b strings.Builder
	q := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q && c == '\\' && i+1 < len(s):
			b.WriteByte(c)
			i++
			b.WriteByte(s[i])
			continue
		case c == '"':
			q = !q
		case !q && (c == ' ' || c == '\t' || c == '\r' || c == '\n'):
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// internalize removes quoting: "joe q"@x is the address joe q@x, the
// form Postfix's tok822_internalize gives and the queue stores.
func internalize(s string) string {
	if !strings.ContainsRune(s, '"') {
		return s
	}
	var b strings.Builder
	q := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			q = !q
			continue
		case q && c == '\\' && i+1 < len(s):
			i++
			c = s[i]
		}
		b.WriteByte(c)
	}
	return b.String()
}
