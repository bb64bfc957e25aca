package aliases

import "strings"

// kind classifies an RFC 822 lexical token (RFC 822 section 3.3).
type kind byte

const (
	atom kind = iota + 1
	qstring
	comment
	domlit
	operator
)

// token is one lexical unit of an alias line. For an operator, text is the
// operator character; for a quoted string or domain literal, the content
// with quoting backslashes removed; for a comment, the raw text including
// its parentheses, because Postfix keeps comments as written.
type token struct {
	kind kind
	text string
}

// specials are RFC 822's specials plus '!', '%' and '|', which Postfix's
// address tokenizer also treats as operators (bang paths, the percent hack
// and pipe commands); that is why `| "cmd"` becomes `|"cmd"`.
const specials = "()<>@,;:\\\".[]!%|"

func isOperator(c byte) bool {
	return strings.IndexByte(specials, c) >= 0
}

// isTokenSpace reports whether c separates tokens. Unlike the line reader,
// the address tokenizer does not count vertical tab and form feed as space:
// Postfix keeps them inside words, and quotes those words ("\vb").
func isTokenSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// quotedByte is how a byte inside quotes or after a backslash is stored:
// Postfix turns tab and CR there into plain spaces.
func quotedByte(c byte) byte {
	if c == '\t' || c == '\r' {
		return ' '
	}
	return c
}

// scan splits s into tokens. Unterminated quoted strings, comments and
// domain literals end at the end of the line, as Postfix accepts them; a
// backslash quotes the next byte, inside atoms too.
func scan(s string) []token {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case isTokenSpace(c):
			i++
		case c == '(':
			j, depth := i+1, 1
			for j < len(s) && depth > 0 {
				switch s[j] {
				case '\\':
					if j+1 < len(s) {
						j++
					}
				case '(':
					depth++
				case ')':
					depth--
				}
				j++
			}
			toks = append(toks, token{comment, s[i:j]})
			i = j
		case c == '"' || c == '[':
			end := byte('"')
			k := qstring
			if c == '[' {
				end, k = ']', domlit
			}
			var b strings.Builder
			j := i + 1
			for j < len(s) && s[j] != end {
				if s[j] == '\\' {
					j++
					if j >= len(s) {
						break
					}
				}
				b.WriteByte(quotedByte(s[j]))
				j++
			}
			if j < len(s) {
				j++ // the closing quote or bracket
			}
			toks = append(toks, token{k, b.String()})
			i = j
		case c == '\\' || !isOperator(c):
			var b strings.Builder
			j := i
			for j < len(s) {
				d := s[j]
				if d == '\\' {
					j++
					if j < len(s) {
						b.WriteByte(quotedByte(s[j]))
						j++
					}
					continue
				}
				if isTokenSpace(d) || isOperator(d) {
					break
				}
				b.WriteByte(d)
				j++
			}
			toks = append(toks, token{atom, b.String()})
			i = j
		default:
			toks = append(toks, token{operator, s[i : i+1]})
			i++
		}
	}
	return toks
}

// spaceAfter reports whether a space separates t from next when tokens are
// written back out: after every comma, before '<', and between two words
// (atoms, quoted strings, comments, domain literals). This is the spelling
// Postfix gives alias values and keys, so "a ,b" is stored as "a, b".
func spaceAfter(t, next token) bool {
	if t.kind == operator && t.text == "," {
		return true
	}
	if next.kind == operator && next.text == "<" {
		return true
	}
	return t.kind != operator && next.kind != operator
}

// render writes toks out. quote selects the external form (values: quoted
// strings and atoms that need it are quoted) or the internal one (keys:
// quotes removed).
func render(toks []token, quote bool) string {
	var b strings.Builder
	for i, t := range toks {
		switch t.kind {
		case qstring:
			if quote {
				writeQuoted(&b, t.text)
			} else {
				b.WriteString(t.text)
			}
		case atom:
			if quote && needsQuote(t.text) {
				writeQuoted(&b, t.text)
			} else {
				b.WriteString(t.text)
			}
		case domlit:
			// Postfix escapes only backslashes inside a domain
			// literal: "[a\\]b]" is stored as "[a]b]".
			b.WriteByte('[')
			b.WriteString(strings.ReplaceAll(t.text, "\\", "\\\\"))
			b.WriteByte(']')
		default:
			b.WriteString(t.text)
		}
		switch {
		case i+1 < len(toks):
			if spaceAfter(t, toks[i+1]) {
				b.WriteByte(' ')
			}
		case t.kind == operator && t.text == ",":
			// Postfix leaves the space after a trailing comma.
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// needsQuote reports whether an atom (which may hold backslash-escaped
// specials or spaces) must be quoted to read back as one word.
func needsQuote(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || isOperator(c) {
			return true
		}
	}
	return false
}

func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}
