package mastercf

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/testutil"
)

// TestRandomDifferential builds master.cf entries from a pool of argument
// shapes (fixed seed, so failures reproduce), keeps those moat accepts, and
// compares -M, -Mf, -F and -P with Debian's postconf in one run each.
func TestRandomDifferential(t *testing.T) {
	tool := testutil.PostfixTool(t, "postconf")
	pool := []string{
		"-o", "-o", "-o", "a=1", "b=", "c=x,y", "{ d = e f }", "{g=h}", "{ i = }", "-v", "-vv", "-D",
		"-vo", "-oj=2", "--", "x", "y=z", "{ p q }", "{r}", "{}", "${recipient}", "argv=/bin/cat",
		"flags=R", "-S", "{ -v }", "{-o}", "verylongargument_" + strings.Repeat("x", 40),
		"medium_argument_" + strings.Repeat("y", 15), "{ spaced  value }", "k=$l",
		"{{a}}", "-o", "{ x = {a b} }", "x{ y }", "a}b", "-oo", "-Dvox=1", "--o", "-", "{\tt\tu\t}", "u=v\tw",
	}
	for seed := int64(1); seed <= 6; seed++ {
		randomRound(t, tool, pool, seed)
	}
}

func randomRound(t *testing.T, tool string, pool []string, seed int64) {
	r := rand.New(rand.NewSource(seed))
	var b strings.Builder
	n := 0
	for i := 0; n < 300 && i < 5000; i++ {
		var words []string
		for k := r.Intn(9); k > 0; k-- {
			words = append(words, pool[r.Intn(len(pool))])
		}
		sep := " "
		if r.Intn(3) == 0 {
			sep = "\n  "
		}
		entry := fmt.Sprintf("s%d %s - n n - - cmd%s%s\n", i, []string{"unix", "inet", "fifo"}[r.Intn(3)],
			strings.Repeat("d", r.Intn(60)), sep+strings.Join(words, sep))
		if _, err := Parse("r.cf", []byte(entry)); err != nil {
			continue
		}
		b.WriteString(entry)
		n++
	}
	path := filepath.Join(t.TempDir(), "random.cf")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"-M", "-Mf", "-F", "-Ff", "-P", "-Pf"} {
		want, _ := postconf(t, tool, path, mode)
		var got strings.Builder
		switch mode {
		case "-M":
			err = f.WriteM(&got, false, nil)
		case "-Mf":
			err = f.WriteM(&got, true, nil)
		case "-F":
			err = f.WriteF(&got, nil)
		case "-Ff":
			err = f.WriteFields(&got, true, nil)
		case "-P":
			err = f.WriteP(&got, nil)
		default:
			err = f.WriteParams(&got, true, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		wl, gl := strings.Split(want, "\n"), strings.Split(got.String(), "\n")
		for i := 0; i < len(wl) && i < len(gl); i++ {
			if wl[i] != gl[i] {
				t.Errorf("seed %d %s line %d:\npostconf %q\n    moat %q", seed, mode, i+1, wl[i], gl[i])
				break
			}
		}
		if len(wl) != len(gl) {
			t.Errorf("seed %d %s: %d lines, postconf %d", seed, mode, len(gl), len(wl))
		}
	}
}
