package smtp

import (
	"strings"
	"testing"
)

// FuzzMechFilter: any smtp_sasl_mechanism_filter value either is refused
// or gives a filter that answers for any mechanism name; a name the value
// lists first, unnegated, is kept.
func FuzzMechFilter(f *testing.F) {
	f.Add("plain, login", "PLAIN")
	f.Add("!gssapi, !login, static:rest", "LOGIN")
	f.Add("hash:/etc/postfix/mechs", "CRAM-MD5")
	f.Add("{ plain }, !!x", "x")
	f.Fuzz(func(t *testing.T, value, mech string) {
		keep, err := mechFilter(value)
		if err != nil || keep == nil {
			return
		}
		keep(mech)
		first := strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
		if len(first) > 0 && first[0] == mech && !strings.HasPrefix(mech, "!") && !strings.ContainsAny(value, "{}") && !keep(mech) {
			t.Fatalf("filter %q drops its first name %q", value, mech)
		}
	})
}
