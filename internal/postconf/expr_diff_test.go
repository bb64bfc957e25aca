package postconf

import (
	"path/filepath"
	"strconv"
	"testing"

	"moat/internal/testutil"
)

// exprCases are main.cf values whose expansion moat must print exactly as
// Postfix's postconf -x does, errors included.
var exprCases = []string{
	"$myhostname",
	"${myhostname}",
	"$(myhostname)",
	"$$myhostname",
	"a$",
	"a$ b",
	"$-",
	"${",
	"${}",
	"${ }",
	"$()",
	"${myhostname?}",
	"${myhostname:}",
	"${undefined_thing?x}",
	"${mydomain?{a}:{b}}",
	"${mydomain?{a}:{b}} tail",
	"${mydomain?{a} : {b} }",
	"${mydomain ? {a}}",
	"${{a}=={a}}",
	"${{a}=={a}?yes}",
	"${{a}!={a}:no}",
	"${{$compatibility_level} <level {1}}",
	"${{3.6} <=level {3.6.0}}",
	"${{3.6.1.2} <level {3}}",
	"${{3.x} <level {3}}",
	"${{} <level {3}}",
	"${{10} > {9}}",
	"${{010} == {10}}",
	"${{-5} < {3}}",
	"${{abc} <length {ab}}",
	"${{a} === {a}}",
	"${{a} =<  {a}}",
	"${{a} ==Length {a}}",
	"${{a} == {a} junk}",
	"${{a} == {a}? {x} : {y} junk}",
	"${{a} == {a}?{x}:{y}:{z}}",
	"${{a} == {a}?{x{y}}",
	"${{a} == }",
	"${{a}",
	"${{a} == {b}?{x}}${{a} == {a}?{y}}",
	"${mydomain?{x}}}",
	"{$myhostname}",
	"${myhostname}}{",
	"${my.domain}",
	"${1abc}",
	"$_x",
	"${{${{a} == {a}}} == {true}}",
	"${mydomain?${myhostname}}",
	"${{x} == {x} ? {$myhostname} : {$undefined_y}}",
}

// TestDifferentialExpressions compares `postconf -x smtpd_banner` for each
// expression in exprCases, stdout, stderr (as distinct lines) and exit.
func TestDifferentialExpressions(t *testing.T) {
	tool := testutil.PostfixTool(t, "postconf")
	for i, expr := range exprCases {
		// Each case has its own directory and runs in parallel: Postfix
		// sleeps after a fatal macro error, and most of this test is
		// waiting for it.
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			compareExpression(t, tool, expr)
		})
	}
}

// compareExpression runs both postconfs on one expression.
func compareExpression(t *testing.T, tool, expr string) {
	dir := t.TempDir()
	testutil.WriteOld(t, filepath.Join(dir, "master.cf"), nil)
	// compatibility_level is Postfix's so the level comparisons match.
	mainCF := "compatibility_level = 0\nmyhostname = mx.example.com\nsmtpd_banner = " + expr + "\n"
	testutil.WriteOld(t, filepath.Join(dir, "main.cf"), []byte(mainCF))
	args := []string{"-c", dir, "-x", "smtpd_banner"}
	pout, perr, prc := runPostfix(t, tool, args...)
	mout, merr, mrc := runMoat(args...)
	pl := uniqueLines(perr)
	var ml []string
	for _, l := range uniqueLines(merr) {
		if !moatOnly.MatchString(l) {
			ml = append(ml, l)
		}
	}
	if pout != mout || prc != mrc || len(pl) != len(ml) {
		t.Errorf("%q:\npostfix %d %q %q\n   moat %d %q %q", expr, prc, pout, pl, mrc, mout, ml)
		return
	}
	for i := range pl {
		if pl[i] != ml[i] {
			t.Errorf("%q: stderr\npostfix %q\n   moat %q", expr, pl, ml)
			break
		}
	}
}
