package maps

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"moat/internal/testutil"
)

// randomDiffSets are the alphabets random patterns are drawn from and
// the keys each is tried with.
var randomDiffSets = map[string][]struct{ alphabet, keys string }{
	"regexp": {
		{`ab()[]^-]:.*\{}12,|+?x`, `a,b,ab,ba,aab,abb,],:,x,a:b,[,^,A,B,1,2,{,},aaa,bbb,\`},
		{`ab\(){}*+?|^$.[]12,`, `a,b,ab,ba,aab,abb,(,),{,},a{1},a+,a?,|,*,.,^,$,[,],1,2,,,aaa`},
	},
	"pcre": {
		{`ab()|*+?{}[]^$.\-,1:=<>!#PRk`, `a,b,ab,ba,aa,abab,aab,A,AB,a-b,],\,{,1,a1,(,a}`},
		{`a()\12gk{}<>-+P=?:|`, `a,aa,aaa,a1,ak,g,k,<a>,a+,(),?`},
	},
	"cidr": {
		{`1112220.....::/3f[`, `1.2.3.4,0.0.0.0,1.1.1.1,::1,::,::f,1::2,2.2.2.2,::ffff:1.2.3.4,1:2::3,12.1.2.0,::12`},
	},
}

// TestPostmapRandomDifferential draws one-rule tables from small
// alphabets and compares every answer and warning with postmap's. It is
// slow (a postmap run per table), so it runs only when
// MOAT_RANDOM_DIFF names a table type (regexp, pcre or cidr); N=... in
// MOAT_RANDOM_DIFF_N sets the number of tables per alphabet (600).
// Constructs moat refuses by design are skipped when Postfix loads them.
func TestPostmapRandomDifferential(t *testing.T) {
	typ := os.Getenv("MOAT_RANDOM_DIFF")
	if typ == "" {
		t.Skip("set MOAT_RANDOM_DIFF=regexp|pcre|cidr to run")
	}
	n := 600
	fmt.Sscan(os.Getenv("MOAT_RANDOM_DIFF_N"), &n)
	postmap := testutil.PostfixTool(t, "postmap")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "t")
	r := rand.New(rand.NewSource(1))
	for _, set := range randomDiffSets[typ] {
		keys := strings.Split(set.keys, ",")
		failures := 0
		for range n {
			var b strings.Builder
			for range 1 + r.Intn(12) {
				b.WriteByte(set.alphabet[r.Intn(len(set.alphabet))])
			}
			src := b.String() + " R\n"
			if typ != "cidr" {
				flags := []string{"", "i", "m", "x", "s", "U"}[r.Intn(4+2*boolInt(typ == "pcre"))]
				src = "/" + b.String() + "/" + flags + " R\n"
				if strings.Contains(b.String(), "(") {
					src = "/" + b.String() + "/" + flags + " R($1)\n"
				}
			}
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(postmap, "-c", dir, "-q", "-", typ+":"+path)
			cmd.Stdin = strings.NewReader(strings.Join(keys, "\n") + "\n")
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			_ = cmd.Run() // status 1 just means no key was found
			pf := map[string]string{}
			for _, l := range strings.Split(stdout.String(), "\n") {
				if k, v, ok := strings.Cut(l, "\t"); ok {
					pf[k] = v
				}
			}
			pfWarn := strings.ReplaceAll(strings.TrimSpace(strings.ReplaceAll(stderr.String(), "postmap: warning: ", "")), dir+"/", "")
			var warns []string
			opts := DefaultOptions()
			opts.Warn = func(s string) { warns = append(warns, strings.ReplaceAll(s, dir+"/", "")) }
			tab, err := Open(typ+":"+path, opts)
			if err != nil {
				if pfWarn != "" {
					t.Errorf("%q: moat refuses (%v) a rule Postfix skips with %q", src, err, pfWarn)
				}
				continue
			}
			var diffs []string
			for _, k := range keys {
				v, found, _ := tab.Lookup(k)
				if pv, pfound := pf[k]; found != pfound || v != pv {
					diffs = append(diffs, fmt.Sprintf("%q: moat %q/%v, postmap %q/%v", k, v, found, pv, pfound))
				}
			}
			mw := strings.Join(warns, "\n")
			if typ == "pcre" {
				// Documented difference: for a pattern PCRE2 rejects,
				// moat's offset and wording can differ (see pcreDialect).
				mw, pfWarn = pcreErrorText.ReplaceAllString(mw, "error in regex"), pcreErrorText.ReplaceAllString(pfWarn, "error in regex")
			}
			if len(diffs) > 0 || mw != pfWarn {
				t.Errorf("%q: warnings moat %q, postmap %q; %s", src, mw, pfWarn, strings.Join(diffs, "; "))
				if failures++; failures > 20 {
					t.Fatal("too many differences")
				}
			}
		}
	}
}

var pcreErrorText = regexp.MustCompile(`error in regex at offset \d+: .*`)

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
