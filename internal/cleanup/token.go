package cleanup

import "strings"

type tokKind int

const (
	tokAtom tokKind = iota
	tokQuoted
	tokSpecial
)

type token struct {
	kind tokKind
	text string
}

// maxTokens bounds the work spent on one header value (compare
// header_address_token_limit): MIME parameters past it are not seen.
const maxTokens = 10240

// tokenize splits a structured header value into RFC 2045 §5.1 tokens:
// atoms (tspecials end them), quoted strings with their backslash escapes
// removed and folding ("\n" plus the blanks after it) taken out, and single
// tspecials. Comments, nested and with quoted pairs (RFC 5322 §3.2.2), are
// skipped.
func tokenize(s string) []token {
	var out []token
	for i := 0; i < len(s) && len(out) < maxTokens; {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			depth := 0
			for i < len(s) {
				switch s[i] {
				case '\\':
					i++
				case '(':
					depth++
				case ')':
					depth--
				}
				i++
				if depth == 0 {
					break
				}
			}
		case c == '"':
			var b strings.Builder
			i++
			for i < len(s) && s[i] != '"' {
				switch s[i] {
				case '\\':
					if i+1 < len(s) {
						i++
						b.WriteByte(s[i])
					}
					i++
				case '\n':
					i++
					for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
						i++
					}
				default:
					b.WriteByte(s[i])
					i++
				}
			}
			i++
			out = append(out, token{tokQuoted, b.String()})
		case strings.IndexByte("()<>@,;:\\\"/[]?=", c) >= 0:
			out = append(out, token{tokSpecial, string(c)})
			i++
		default:
			j := i
			for j < len(s) && s[j] > ' ' && s[j] != 0x7f && strings.IndexByte("()<>@,;:\\\"/[]?=", s[j]) < 0 {
				j++
			}
			if j == i {
				j++ // a control character: skip it
			} else {
				out = append(out, token{tokAtom, s[i:j]})
			}
			i = j
		}
	}
	return out
}

// parseContentType returns the lowercased type and subtype and the
// boundary parameter of a Content-Type value (RFC 2045 §5.1).
func parseContentType(v string) (typ, sub, boundary string) {
	toks := tokenize(v)
	if len(toks) == 0 || toks[0].kind != tokAtom {
		return "", "", ""
	}
	typ = strings.ToLower(toks[0].text)
	i := 1
	if i+1 < len(toks) && toks[i].text == "/" && toks[i].kind == tokSpecial && toks[i+1].kind == tokAtom {
		sub = strings.ToLower(toks[i+1].text)
		i += 2
	}
	for ; i < len(toks); i++ {
		if toks[i].kind != tokSpecial || toks[i].text != ";" {
			continue
		}
		if i+3 < len(toks) && toks[i+1].kind == tokAtom && strings.EqualFold(toks[i+1].text, "boundary") &&
			toks[i+2].kind == tokSpecial && toks[i+2].text == "=" && toks[i+3].kind != tokSpecial {
			boundary = toks[i+3].text
		}
	}
	return typ, sub, boundary
}
