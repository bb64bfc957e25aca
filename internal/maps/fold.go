package maps

import (
	"strings"
	"unicode"
)

// FoldKey case-folds a table key as Postfix's DICT_FLAG_FOLD_FIX does:
// ASCII letters only when smtputf8 is off (Postfix's lowercase() in the C
// locale, so "KÄY" becomes "kÄy"), full Unicode case folding when it is on
// (utf8). postmap builds and daemons look up with the same function, so a
// key stored by one is found by the other.
func FoldKey(s string, utf8 bool) string {
	if utf8 {
		return foldUTF8(s)
	}
	return foldASCII(s)
}

// fold applies the table options' folding to a lookup key.
func (o Options) fold(key string) string {
	if !o.Fold {
		return key
	}
	return FoldKey(key, o.UTF8)
}

// foldUTF8 case-folds a table key the way Postfix does when
// smtputf8_enable is on (its casefold() uses ICU's full case folding), so
// "Straße" and "STRASSE" are the same key, as are "ÉCOLE" and "école".
// Go's standard library has only simple folding, so the full foldings
// (one rune to several) that occur in mail addresses are listed here; the
// Greek iota-subscript forms are not. Callers must check utf8.ValidString
// first: Postfix refuses other keys.
func foldUTF8(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return foldASCII(s)
	}
	var b strings.Builder
	for _, r := range s {
		if f, ok := fullFold(r); ok {
			b.WriteString(f)
			continue
		}
		b.WriteRune(simpleFold(r))
	}
	return b.String()
}

// simpleFold maps r to its case-folded form: the lower case of its upper
// case, which also folds final sigma, micro sign, long s and the Greek
// symbol variants as Unicode's CaseFolding.txt does. Dotless i has no
// folding; Cherokee (which folds to upper case) is left as lower-cased.
func simpleFold(r rune) rune {
	if r < 0x80 {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}
	if r == 'ı' {
		return r
	}
	if l := unicode.ToLower(r); l != r {
		return l
	}
	return unicode.ToLower(unicode.ToUpper(r))
}

// fullFold returns Unicode's full case folding of r (status F in
// CaseFolding.txt) outside the Greek iota-subscript block.
func fullFold(r rune) (string, bool) {
	switch r {
	case 'ß', 'ẞ':
		return "ss", true
	case 'İ':
		return "i\u0307", true
	case 'ŉ':
		return "\u02bcn", true
	case 'ǰ':
		return "j\u030c", true
	case 'ΐ':
		return "\u03b9\u0308\u0301", true
	case 'ΰ':
		return "\u03c5\u0308\u0301", true
	case 'և':
		return "\u0565\u0582", true
	case 'ẖ':
		return "h\u0331", true
	case 'ẗ':
		return "t\u0308", true
	case 'ẘ':
		return "w\u030a", true
	case 'ẙ':
		return "y\u030a", true
	case 'ẚ':
		return "a\u02be", true
	case 'ﬀ':
		return "ff", true
	case 'ﬁ':
		return "fi", true
	case 'ﬂ':
		return "fl", true
	case 'ﬃ':
		return "ffi", true
	case 'ﬄ':
		return "ffl", true
	case 'ﬅ', 'ﬆ':
		return "st", true
	case 'ﬓ':
		return "\u0574\u0576", true
	case 'ﬔ':
		return "\u0574\u0565", true
	case 'ﬕ':
		return "\u0574\u056b", true
	case 'ﬖ':
		return "\u057e\u0576", true
	case 'ﬗ':
		return "\u0574\u056d", true
	}
	return "", false
}
