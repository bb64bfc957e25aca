package rewrite

import "strings"

// Token kinds of an RFC 5322 §3.2 address list, as Postfix's tok822(3)
// scanner sees them. Specials stand for themselves.
const (
	tokAtom    = 'a'
	tokQuoted  = 'q'
	tokComment = 'c'
	tokDomLit  = 'd'
	tokSpace   = ' '
)

// token is one lexical token of a header value: its kind and where it
// lies in the value, so that a rewritten address replaces exactly its own
// bytes and nothing else.
type token struct {
	kind       byte
	start, end int
}

// hdrSpecials are RFC 5322's specials (§3.2.3) that tok822 scans as
// single-character tokens; everything else that is not white space, a
// quote, a comment or a domain literal is part of an atom. 8-bit bytes
// are atom bytes, as in tok822 (and RFC 6532).
const hdrSpecials = "<>@,;:."

// scanHeader splits a header value into tokens. It reports false for what
// cannot be tokenized with confidence — an unterminated quoted string,
// comment or domain literal, a backslash outside them, a control
// character — and the caller then leaves the header alone: a header moat
// cannot read is never rewritten, so it is never corrupted. More than
// limit tokens (header_address_token_limit) is refused too.
func scanHeader(v string, limit int) ([]token, bool) {
	var toks []token
	for i := 0; i < len(v); {
		if len(toks) >= limit {
			return nil, false
		}
		c := v[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			j := i + 1
			for j < len(v) && (v[j] == ' ' || v[j] == '\t' || v[j] == '\n' || v[j] == '\r') {
				j++
			}
			toks = append(toks, token{tokSpace, i, j})
			i = j
		case c == '"':
			j, ok := skipDelimited(v, i, '"', '"', false)
			if !ok {
				return nil, false
			}
			toks = append(toks, token{tokQuoted, i, j})
			i = j
		case c == '(':
			j, ok := skipDelimited(v, i, '(', ')', true)
			if !ok {
				return nil, false
			}
			toks = append(toks, token{tokComment, i, j})
			i = j
		case c == '[':
			j, ok := skipDelimited(v, i, '[', ']', false)
			if !ok {
				return nil, false
			}
			toks = append(toks, token{tokDomLit, i, j})
			i = j
		case c == '\\' || c == ')' || c == ']' || c < ' ' || c == 0x7f:
			return nil, false
		case strings.IndexByte(hdrSpecials, c) >= 0:
			toks = append(toks, token{c, i, i + 1})
			i++
		default:
			j := i + 1
			for j < len(v) && isAtomByte(v[j]) {
				j++
			}
			toks = append(toks, token{tokAtom, i, j})
			i = j
		}
	}
	return toks, true
}

func isAtomByte(c byte) bool {
	return c > ' ' && c != 0x7f && strings.IndexByte(hdrSpecials+"\"()[]\\", c) < 0
}

// skipDelimited returns the index after the closing delimiter of the
// quoted string, comment (nested when nest) or domain literal that starts
// at i, honouring backslash escapes (RFC 5322 quoted-pair).
func skipDelimited(v string, i int, open, close byte, nest bool) (int, bool) {
	depth := 0
	for j := i; j < len(v); j++ {
		c := v[j]
		switch {
		case c == '\\':
			j++
		case c == close && (depth > 0 || j > i):
			depth--
			if depth == 0 {
				return j + 1, true
			}
		case c == open && (nest || j == i):
			depth++
		case c < ' ' && c != '\t' && c != '\n' && c != '\r', c == 0x7f:
			return 0, false
		}
	}
	return 0, false
}

// addrSpan is one address found in a header value: the bytes v[start:end]
// are its addr-spec, and local/domain its parts in internal form (quotes
// removed); hasAt says whether there was an "@" at all, quoted whether
// the local part had a quoted string (no bang-path or percent-hack
// rewriting then, as those operators are not seen inside quotes).
type addrSpan struct {
	start, end    int
	local, domain string
	hasAt, quoted bool
	// elemStart is where the element (display name and all) begins,
	// after the white space that follows a list comma: a fold goes there.
	elemStart int
}

// findAddrs returns the addresses of an address list header value
// (RFC 5322 §3.4 address-list, with groups), as tok822_grep(TOK822_ADDR)
// finds them: the part inside angle brackets, or a bare addr-spec with
// only comments around it. An element it cannot read as an address is
// skipped and keeps its text; ok is false when the value as a whole does
// not tokenize, has more than limit tokens or its brackets do not pair,
// and then nothing is rewritten.
func findAddrs(v string, limit int) (spans []addrSpan, ok bool) {
	toks, ok := scanHeader(v, limit)
	if !ok {
		return nil, false
	}
	inAngle, inGroup := false, false
	elem := 0 // first token of the current element
	for i := 0; i <= len(toks); i++ {
		end := i == len(toks)
		if !end {
			switch toks[i].kind {
			case '<':
				if inAngle {
					return nil, false
				}
				inAngle = true
				continue
			case '>':
				if !inAngle {
					return nil, false
				}
				inAngle = false
				continue
			case ':':
				if inAngle {
					continue
				}
				if inGroup {
					return nil, false
				}
				// A group's display name ends here; its members
				// follow as elements of their own.
				inGroup = true
				elem = i + 1
				continue
			case ';':
				if inAngle {
					continue
				}
				if !inGroup {
					return nil, false
				}
				inGroup = false
			case ',':
				if inAngle {
					continue
				}
			default:
				continue
			}
		} else if inAngle {
			return nil, false
		}
		if s, ok := elementAddr(v, toks[elem:i]); ok {
			spans = append(spans, s)
		}
		elem = i + 1
	}
	return spans, true
}

// elementAddr finds the address of one list element.
func elementAddr(v string, toks []token) (addrSpan, bool) {
	elemStart := -1
	for _, t := range toks {
		if t.kind != tokSpace {
			elemStart = t.start
			break
		}
	}
	open, close := -1, -1
	for i, t := range toks {
		switch t.kind {
		case '<':
			if open >= 0 {
				return addrSpan{}, false
			}
			open = i
		case '>':
			close = i
		}
	}
	inner := toks
	if open >= 0 {
		inner = toks[open+1 : close]
	}
	// Trim white space and comments around the address; anything else
	// outside the angle brackets is the display name and is kept.
	sig := inner[:0:0]
	for _, t := range inner {
		if t.kind != tokSpace && t.kind != tokComment {
			sig = append(sig, t)
		}
	}
	if len(sig) == 0 {
		return addrSpan{}, false
	}
	// The address must be one run of words, dots, "@" and a domain with
	// nothing between: "Joe Public joe@x" (a phrase without brackets)
	// or "<@route:joe@x>" is not rewritten.
	first, last := sig[0], sig[len(sig)-1]
	var s addrSpan
	s.start, s.end, s.elemStart = first.start, last.end, elemStart
	var local, domain strings.Builder
	for _, t := range inner {
		if t.start < first.start || t.end > last.end {
			continue
		}
		// White space or a comment inside the address falls to the
		// default case below.
		text := v[t.start:t.end]
		switch t.kind {
		case tokAtom, '.':
			if s.hasAt {
				domain.WriteString(text)
			} else {
				local.WriteString(text)
			}
		case tokQuoted:
			if s.hasAt {
				return addrSpan{}, false
			}
			s.quoted = true
			local.WriteString(unquoteAddr(text))
		case tokDomLit:
			// A literal holding "@", a quote or an escape would not
			// survive the internal form (split at the last "@").
			if !s.hasAt || strings.ContainsAny(text[1:len(text)-1], "@\"\\[") {
				return addrSpan{}, false
			}
			domain.WriteString(text)
		case '@':
			if s.hasAt {
				return addrSpan{}, false
			}
			s.hasAt = true
		default:
			return addrSpan{}, false
		}
	}
	s.local, s.domain = local.String(), domain.String()
	if s.local == "" && !s.quoted {
		return addrSpan{}, false
	}
	// A control character or line break that a quoted pair or a
	// folded quoted string put in the local part could not be written
	// back as it was.
	if strings.IndexFunc(s.local, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		return addrSpan{}, false
	}
	return s, true
}
