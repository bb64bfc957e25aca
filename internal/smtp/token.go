package smtp

import "strings"

// TokenType classifies a command argument as Postfix's smtpd_token does.
type TokenType int

const (
	// TokenOther is an ordinary word, address or parameter.
	TokenOther TokenType = iota
	// TokenError is a token whose <...> or "..." never closes.
	TokenError
)

// String is the name smtpd_token's test driver prints.
func (t TokenType) String() string {
	if t == TokenError {
		return "error"
	}
	return "other"
}

// Token is one command-line word. Value keeps the external (quoted) form,
// because the address parser needs the quotes and ORCPT defaults to the
// address as the client sent it (RFC 3461 §4.2).
type Token struct {
	Type  TokenType
	Value string
}

// Tokenize splits an SMTP command line the way Postfix's smtpd does, so
// that moat accepts and refuses the same sloppy clients: words are
// separated by white space, except inside <...> (which nests) and "..."
// (inside which <> do not count), a backslash quotes the next character,
// and "from:" / "to:" end a word so that "MAIL FROM:<a>" yields
// MAIL, FROM:, <a>. An unclosed <...> or "..." yields one TokenError token
// holding the rest of the line.
func Tokenize(line string) []Token {
	var toks []Token
	i := 0
	for {
		var tok Token
		var ok bool
		tok, i, ok = nextToken(line, i)
		if !ok {
			return toks
		}
		toks = append(toks, tok)
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func nextToken(s string, i int) (Token, int, bool) {
	var b strings.Builder
	typ := TokenOther
	for i < len(s) {
		c := s[i]
		i++
		switch {
		case isSpace(c):
			for i < len(s) && isSpace(s[i]) {
				i++
			}
			if b.Len() > 0 {
				return Token{typ, b.String()}, i, true
			}
		case c == '<':
			var bad bool
			i, bad = quoted(s, i, &b, '<', '>')
			if bad {
				typ = TokenError
			}
		case c == '"':
			var bad bool
			i, bad = quoted(s, i, &b, '"', '"')
			if bad {
				typ = TokenError
			}
		case c == ':':
			b.WriteByte(c)
			if w := b.String(); strings.EqualFold(w, "to:") || strings.EqualFold(w, "from:") {
				return Token{typ, w}, i, true
			}
		default:
			if c == '\\' {
				b.WriteByte(c)
				if i >= len(s) {
					// A trailing backslash ends the token, as in Postfix.
					i = len(s)
					break
				}
				c = s[i]
				i++
			}
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return Token{}, i, false
	}
	return Token{typ, b.String()}, i, true
}

// quoted copies a <...> or "..." group starting after its opening byte.
// Within <>, a '"' opens a string in which '>' and '<' are plain, and a '<'
// opens a nested <>; a backslash quotes the next byte. It reports whether
// the group never closed.
func quoted(s string, i int, b *strings.Builder, open, close byte) (int, bool) {
	stack := []byte{close}
	b.WriteByte(open)
	for i < len(s) {
		c := s[i]
		i++
		b.WriteByte(c)
		want := stack[len(stack)-1]
		switch {
		case c == '\\':
			if i >= len(s) {
				return i, true
			}
			b.WriteByte(s[i])
			i++
		case c == want:
			if len(stack) == 1 {
				return i, false
			}
			stack = stack[:len(stack)-1]
		case c == '"':
			stack = append(stack, '"')
		case c == '<' && want == '>':
			stack = append(stack, '>')
		}
	}
	return i, true
}
