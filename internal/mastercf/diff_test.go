package mastercf

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/testutil"
)

// corpus returns the master.cf files of testdata/mastercf that must parse.
func corpus(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testutil.RepoRoot(t), "testdata", "mastercf", "*.cf"))
	if err != nil || len(files) < 10 {
		t.Fatalf("testdata/mastercf: want at least 10 master.cf files, got %d (%v)", len(files), err)
	}
	return files
}

// postconf runs Debian's postconf on a copy of src with an empty main.cf.
func postconf(t *testing.T, tool, src string, args ...string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WriteOld(t, filepath.Join(dir, "master.cf"), data)
	testutil.WriteOld(t, filepath.Join(dir, "main.cf"), nil)
	cmd := exec.Command(tool, append([]string{"-c", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/bin"}
	if err := cmd.Run(); err != nil {
		t.Fatalf("postconf %v on %s: %v\n%s", args, src, err, errb.String())
	}
	return out.String(), errb.String()
}

// filterSets are the selections each corpus file is printed with, per
// option: -M takes service[/type], -F service/type/field and -P
// service/type/parameter.
func filterSets() map[string][][]string {
	return map[string][][]string{
		"-M": {nil, {"smtp"}, {"smtp/inet", "relay/unix", "nosuch"}, {"*/unix"}, {"submission", "smtp/*", "smtp"}, {"smtp//", "*", "smtp//inet", "smtp/bogus"}},
		"-F": {nil, {"smtp/inet/chroot", "*/*/command", "smtp//", "relay/unix/*"}, {"*/unix/process_limit", "submission"}},
		"-P": {nil, {"*/*/syslog_name", "smtp/inet", "relay//"}, {"*/*/smtpd_sasl_auth_enable", "*/inet/*", "smtps"}},
	}
}

// TestDifferential compares WriteM, WriteM(fold), WriteF and WriteP with
// Debian's postconf -M, -Mf, -F and -P byte for byte.
func TestDifferential(t *testing.T) {
	tool := testutil.PostfixTool(t, "postconf")
	sets := filterSets()
	filtered := map[string]bool{"debian-dist.cf": true, "smtps-wrapper.cf": true, "seed002-corrected.cf": true, "content-filter.cf": true}
	for _, path := range corpus(t) {
		f, err := Load(path)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for _, mode := range []string{"-M", "-Mf", "-F", "-Ff", "-P", "-Pf"} {
			for k, fs := range sets[mode[:2]] {
				if k > 0 && !filtered[filepath.Base(path)] {
					continue // selections: a few files suffice, keep the run short
				}
				args := append([]string{mode}, fs...)
				want, stderr := postconf(t, tool, path, args...)
				var warned []string
				for _, l := range strings.Split(stderr, "\n") {
					if _, arg, ok := strings.Cut(l, "warning: unmatched request: "); ok {
						warned = append(warned, strings.Trim(arg, `"`))
					}
				}
				if um := f.Unmatched(mode[1], fs); strings.Join(um, " ") != strings.Join(warned, " ") {
					t.Errorf("%s %v: Unmatched %q, postconf warned about %q", filepath.Base(path), args, um, warned)
				}
				var got bytes.Buffer
				switch mode {
				case "-M":
					err = f.WriteM(&got, false, fs)
				case "-Mf":
					err = f.WriteM(&got, true, fs)
				case "-F":
					err = f.WriteF(&got, fs)
				case "-Ff":
					err = f.WriteFields(&got, true, fs)
				case "-P":
					err = f.WriteP(&got, fs)
				case "-Pf":
					err = f.WriteParams(&got, true, fs)
				}
				if err != nil {
					t.Errorf("%s %v: %v", filepath.Base(path), args, err)
					continue
				}
				if got.String() != want {
					t.Errorf("%s: postconf %v differs\n--- postconf\n%s--- moat\n%s",
						filepath.Base(path), args, want, got.String())
				}
			}
		}
	}
}

// TestSeed002Misreading documents why the spaced form is an error: Postfix
// accepts seed 002's entry as written but drops the spaced overrides and
// every override after them.
func TestSeed002Misreading(t *testing.T) {
	tool := testutil.PostfixTool(t, "postconf")
	path := filepath.Join(testutil.RepoRoot(t), "testdata", "mastercf", "bad", "seed002-spaced.cf")
	out, _ := postconf(t, tool, path, "-P")
	if want := "submission/inet/smtpd_sasl_auth_enable = yes\n"; out != want {
		t.Errorf("Postfix's reading changed: %q, want only %q", out, want)
	}
}
