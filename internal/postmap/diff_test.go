package postmap_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"moat/internal/cli"
	"moat/internal/postalias"
	"moat/internal/postmap"
	"moat/internal/testutil"
)

// step is one command run the same way by Postfix and by moat.
type step struct {
	prog string // "postmap" or "postalias"
	// utf8 runs the step with compatibility_level = 3.6 (Debian's
	// default main.cf), which turns smtputf8_enable on.
	utf8  bool
	args  []string
	stdin string
	// sorted compares stdout as sorted lines: -s prints in database
	// order, Berkeley DB's hash order for Postfix and moat's own for moat.
	sorted bool
	// sortedErr sorts stderr too: -s warns about entries as it meets
	// them, in database order.
	sortedErr bool
}

// result is what one run printed and returned.
type result struct {
	stdout, stderr string
	status         int
	err            error // the tool could not be run at all
}

// knownDiff says why moat's output for a step differs from Debian's
// postmap/postalias, or "" when it must not differ. id is "SCRIPT/PROG
// ARGS". A listed step is still run and its difference logged.
func knownDiff(id string) string {
	const texthash = "internal/maps texthash (not this package) warns with folded keys, " +
		"prints its line warnings before its duplicate warnings instead of in line order, " +
		"and lacks postmap's \"is this an alias file?\" warning"
	switch {
	case strings.Contains(id, " texthash:") && strings.Contains(id, "-q "):
		return texthash
	case strings.HasSuffix(id, "-q x inline:{}"):
		return "internal/maps words an empty inline table \"empty table\", Postfix \"bad syntax\""
	case strings.HasSuffix(id, "-q a cdb:nosuch"):
		return "internal/maps.IndexPath serves every indexed type from NAME.db; Postfix's cdb uses NAME.cdb (lmdb NAME.lmdb)"
	case strings.HasSuffix(id, "-s inline:{a=b,c=d}"):
		return "internal/maps' inline table cannot list its entries yet (no Records method), so -s refuses it"
	}
	return ""
}

// workdirs holds one temp directory per implementation: Postfix writes
// Berkeley DB into x.db and moat its own format, so they never share one.
type workdirs struct {
	pfx, moat, cf string
	cf8           string            // main.cf with compatibility_level = 3.6
	tools         map[string]string // Postfix tool name -> path
}

func setup(t *testing.T) workdirs {
	t.Helper()
	src := filepath.Join(testutil.RepoRoot(t), "testdata", "postmap")
	w := workdirs{pfx: t.TempDir(), moat: t.TempDir(), cf: t.TempDir(), cf8: t.TempDir(), tools: map[string]string{
		"postmap":   testutil.PostfixTool(t, "postmap"),
		"postalias": testutil.PostfixTool(t, "postalias"),
	}}
	// moat's own default compatibility_level is 3.6 (internal/config),
	// Postfix's 0; say it outright so both run with smtputf8_enable off
	// here and on under cf8.
	testutil.WriteOld(t, filepath.Join(w.cf, "main.cf"), []byte("compatibility_level = 0\n"))
	testutil.WriteOld(t, filepath.Join(w.cf8, "main.cf"), []byte("compatibility_level = 3.6\n"))
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{w.pfx, w.moat} {
			testutil.WriteOld(t, filepath.Join(d, e.Name()), data)
		}
	}
	return w
}

// postfixRun runs Debian's tool (w.tools has its path) in w.pfx.
func postfixRun(w workdirs, s step) result {
	cmd := exec.Command(w.tools[s.prog], append([]string{"-c", w.confDir(s)}, s.args...)...)
	cmd.Dir = w.pfx
	cmd.Stdin = strings.NewReader(s.stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/bin", "LANG=C"}
	err := cmd.Run()
	status := 0
	if ee, ok := err.(*exec.ExitError); ok {
		status, err = ee.ExitCode(), nil
	}
	return result{out.String(), errb.String(), status, err}
}

func (w workdirs) confDir(s step) string {
	if s.utf8 {
		return w.cf8
	}
	return w.cf
}

func runMoat(t *testing.T, w workdirs, s step) result {
	t.Helper()
	t.Chdir(w.moat)
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(s.stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(string) string { return "" }}
	args := append([]string{"-c", w.confDir(s)}, s.args...)
	var status int
	if s.prog == "postalias" {
		status = postalias.Main(env, s.prog, args)
	} else {
		status = postmap.Main(env, s.prog, args)
	}
	return result{out.String(), errb.String(), status, nil}
}

// normalise applies the differences both sides agree to ignore.
func normalise(r result, s step) result {
	if s.prog == "postalias" {
		// Debian's postalias is built with NIS support and stores
		// YP_LAST_MODIFIED (a timestamp) and YP_MASTER_NAME (the host
		// name) for ypserv; moat does not serve NIS maps.
		var keep []string
		for _, l := range strings.SplitAfter(r.stdout, "\n") {
			if !strings.HasPrefix(l, "YP_LAST_MODIFIED:") && !strings.HasPrefix(l, "YP_MASTER_NAME:") {
				keep = append(keep, l)
			}
		}
		r.stdout = strings.Join(keep, "")
	}
	if s.sorted {
		r.stdout = sortLines(r.stdout)
	}
	if s.sortedErr {
		r.stderr = sortLines(r.stderr)
	}
	return r
}

// firstDiff shows the first line where want and got differ, or "same".
func firstDiff(want, got string) string {
	if want == got {
		return "same"
	}
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl || i >= len(w) || i >= len(g) {
			return fmt.Sprintf("line %d:\n  postfix %q\n  moat    %q", i+1, wl, gl)
		}
	}
	return "same"
}

func sortLines(s string) string {
	lines := strings.SplitAfter(s, "\n")
	slices.Sort(lines)
	return strings.Join(lines, "")
}

// script runs steps in order in both directories and compares each.
// It returns the number of steps compared. Steps of an independent script
// change no files, so Postfix's side runs them concurrently: every
// Postfix fatal error sleeps a second before exiting.
func script(t *testing.T, name string, w workdirs, steps []step, independent bool) int {
	t.Helper()
	wants := make([]result, len(steps))
	if independent {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i, s := range steps {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				wants[i] = postfixRun(w, s)
				<-sem
			}()
		}
		wg.Wait()
	}
	// Postfix's steps of a dependent script run in order, alongside moat's.
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !independent {
			for i, s := range steps {
				wants[i] = postfixRun(w, s)
			}
		}
	}()
	gots := make([]result, len(steps))
	for i, s := range steps {
		gots[i] = runMoat(t, w, s)
	}
	<-done
	for i, s := range steps {
		if wants[i].err != nil {
			t.Fatalf("%s %v: %v", s.prog, s.args, wants[i].err)
		}
		want := normalise(wants[i], s)
		got := normalise(gots[i], s)
		if want == got {
			continue
		}
		id := name + "/" + s.prog + " " + strings.Join(s.args, " ")
		if why := knownDiff(id); why != "" {
			t.Logf("known difference in %s: %s", id, why)
			continue
		}
		t.Errorf("step %d: %s (stdin %.80q)\nstatus: postfix %d, moat %d\nstdout: %s\nstderr: %s",
			i, id, s.stdin, want.status, got.status, firstDiff(want.stdout, got.stdout), firstDiff(want.stderr, got.stderr))
	}
	return len(steps)
}
