package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/testutil"
)

// buildMoat returns the binary TestMain built.
func buildMoat(t *testing.T) string {
	t.Helper()
	return moatBin
}

func run(t *testing.T, env []string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	return o.String(), e.String(), code
}

func TestDispatch(t *testing.T) {
	bin := buildMoat(t)
	dev := filepath.Join(testutil.RepoRoot(t), "examples", "dev")

	_, stderr, code := run(t, nil, bin)
	if code == 0 || !strings.Contains(stderr, "usage: moat COMMAND") {
		t.Errorf("moat without a verb: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = run(t, nil, bin, "nosuchverb")
	if code == 0 || !strings.Contains(stderr, `unknown command "nosuchverb"`) {
		t.Errorf("unknown verb: exit %d, stderr %q", code, stderr)
	}

	// The verb form, a link named postconf, and MAIL_CONFIG all reach the
	// same configuration.
	verb, stderr, code := run(t, nil, bin, "postconf", "-c", dev, "-n")
	if code != 0 || !strings.Contains(verb, "myhostname = mx.moat.test\n") {
		t.Fatalf("moat postconf -c %s -n: exit %d\n%s%s", dev, code, verb, stderr)
	}
	link := filepath.Join(t.TempDir(), "postconf")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	viaLink, _, code := run(t, nil, link, "-c", dev, "-n")
	if code != 0 || viaLink != verb {
		t.Errorf("postconf link: exit %d, output differs from moat postconf:\n%s", code, viaLink)
	}
	viaEnv, _, code := run(t, []string{"MAIL_CONFIG=" + dev}, link, "-n")
	if code != 0 || viaEnv != verb {
		t.Errorf("MAIL_CONFIG: exit %d, output differs:\n%s", code, viaEnv)
	}

	// Every verb reaches its own command, which names itself in messages.
	for _, verb := range []string{"postfix", "postmap", "postalias", "postqueue", "mailq", "postsuper", "postcat"} {
		_, stderr, code := run(t, nil, bin, verb, "-Z")
		if code == 0 || !strings.HasPrefix(stderr, verb+":") {
			t.Errorf("moat %s -Z: exit %d, stderr %q", verb, code, stderr)
		}
	}

	// newaliases rebuilds alias_database from MAIL_CONFIG's main.cf.
	cf := t.TempDir()
	aliases := filepath.Join(cf, "aliases")
	mainCF := "alias_database = hash:" + aliases + "\nalias_maps = hash:" + aliases + "\n"
	if err := os.WriteFile(filepath.Join(cf, "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aliases, []byte("postmaster: root\nabuse: root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := run(t, []string{"MAIL_CONFIG=" + cf}, bin, "newaliases"); code != 0 {
		t.Fatalf("newaliases: exit %d: %s", code, stderr)
	}
	out, stderr, code := run(t, []string{"MAIL_CONFIG=" + cf}, bin, "postalias", "-q", "abuse", "hash:"+aliases)
	if code != 0 || out != "root\n" {
		t.Errorf("postalias -q abuse after newaliases: exit %d %q %s", code, out, stderr)
	}
}
