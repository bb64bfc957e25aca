package postalias

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/cli"
)

// TestBuildAndQuery is a smoke test of postalias's own spelling: the "@"
// entry, "name:<TAB>value" output and aliases(5) warnings. The
// differential tests in internal/postmap compare it with Debian's tool.
func TestBuildAndQuery(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "aliases"), []byte("Root: admin,\n  other\nnocolon\nu@h: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	run := func(stdin string, args ...string) (string, int) {
		var out bytes.Buffer
		env := &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
		st := Main(env, "postalias", append([]string{"-c", dir}, args...))
		return out.String(), st
	}
	for _, c := range []struct {
		stdin  string
		args   []string
		want   string
		status int
	}{
		{"", []string{"aliases"}, "postalias: warning: aliases, line 3: need name:value pair\n" +
			"postalias: warning: aliases, line 4: name must be local\n", 0},
		{"", []string{"-q", "ROOT", "aliases"}, "admin, other\n", 0},
		{"", []string{"-q", "@", "aliases"}, "@\n", 0},
		{"root\nnone\n", []string{"-q", "-", "aliases"}, "root:\tadmin, other\n", 0},
		{"", []string{"-b", "aliases"}, "postalias: invalid option -- 'b'\n" +
			"postalias: fatal: usage: postalias [-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [map_type:]file...\n", 1},
	} {
		got, st := run(c.stdin, c.args...)
		if got != c.want || st != c.status {
			t.Errorf("postalias %v: status %d, output\n%s\nwant %d,\n%s", c.args, st, got, c.status, c.want)
		}
	}
}

func TestNewaliases(t *testing.T) {
	dir := t.TempDir()
	a1, a2 := filepath.Join(dir, "a1"), filepath.Join(dir, "a2")
	cf := "alias_database = hash:" + a1 + ", " + a2 + "\n"
	for p, data := range map[string]string{filepath.Join(dir, "main.cf"): cf, a1: "x: y\n", a2: "z: w\n"} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out,
		Getenv: func(k string) string {
			if k == "MAIL_CONFIG" {
				return dir
			}
			return ""
		}}
	if st := Newaliases(env, "newaliases", nil); st != 0 {
		t.Fatalf("status %d: %s", st, out.String())
	}
	for _, p := range []string{a1, a2} {
		if _, err := os.Stat(p + ".db"); err != nil {
			t.Errorf("%s not built: %v", p, err)
		}
	}
}
