package saslpasswd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/cli"
	"moat/internal/maps"
	"moat/internal/sasl"
)

func TestEdit(t *testing.T) {
	src := "# users\nalice@example.org $2y$old\n  continued\nbob@example.org x\n\n"
	got, found := Edit([]byte(src), "Alice@Example.org", "NEW")
	if !found || string(got) != "# users\nAlice@Example.org NEW\nbob@example.org x\n\n" {
		t.Errorf("change: %q %v", got, found)
	}
	got, found = Edit([]byte(src), "bob@example.org", "")
	if !found || string(got) != "# users\nalice@example.org $2y$old\n  continued\n\n" {
		t.Errorf("remove: %q %v", got, found)
	}
	got, found = Edit([]byte("a b"), "c@d", "V")
	if found || string(got) != "a b\nc@d V\n" {
		t.Errorf("add: %q %v", got, found)
	}
}

// run is the command with a password on standard input.
func run(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	st := Main(env, "saslpasswd", args)
	return st, errb.String()
}

func TestMainTables(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte("smtpd_sasl_password_maps = hash:"+dir+"/sasl_passwd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// From main.cf (an indexed table: rebuilt), then -t texthash.
	if st, e := run(t, "s3cret\n", "-c", dir, "-C", "alice@example.org"); st != 0 {
		t.Fatalf("add: %d %s", st, e)
	}
	tab, err := maps.Open("hash:"+dir+"/sasl_passwd", maps.Options{Fold: true})
	if err != nil {
		t.Fatal(err)
	}
	v, found, err := tab.Lookup("alice@example.org")
	tab.Close()
	if err != nil || !found {
		t.Fatalf("lookup: %v %v", found, err)
	}
	c, err := sasl.ParseCredentials(v)
	if err != nil || !c.VerifyPassword([]byte("s3cret")) || !c.HasCRAM() || !c.HasSCRAM() {
		t.Fatalf("stored %q: %v", v, err)
	}
	if strings.Contains(v, "s3cret") {
		t.Fatal("password stored in clear")
	}
	st, err2 := os.Stat(dir + "/sasl_passwd")
	if err2 != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v %v", st.Mode(), err2)
	}
	tt := "texthash:" + dir + "/tt"
	if st, e := run(t, "pw\n", "-c", dir, "-t", tt, "-N", "bob"); st != 0 {
		t.Fatalf("texthash: %d %s", st, e)
	}
	data, _ := os.ReadFile(dir + "/tt")
	if !strings.HasPrefix(string(data), "bob $argon2id$") || strings.Contains(string(data), "SCRAM") {
		t.Errorf("texthash file %q", data)
	}
	if st, e := run(t, "", "-c", dir, "-t", tt, "-d", "bob"); st != 0 {
		t.Fatalf("delete: %d %s", st, e)
	}
	if st, _ := run(t, "", "-c", dir, "-t", tt, "-d", "bob"); st == 0 {
		t.Error("deleting a missing user succeeded")
	}
	for _, args := range [][]string{{"-c", dir, "-t", "pcre:/x", "u"}, {"-c", dir, "u", "v"}, {"-c", dir, "bad user"}} {
		if st, _ := run(t, "pw\n", args...); st == 0 {
			t.Errorf("%q succeeded", args)
		}
	}
	if st, _ := run(t, "\n", "-c", dir, "carol"); st == 0 {
		t.Error("empty password accepted")
	}
}

// FuzzEdit: any source file and user keep every other line and leave
// exactly one entry for the user.
func FuzzEdit(f *testing.F) {
	f.Add("# c\nalice x\n  y\nbob z\n", "alice")
	f.Add("", "a")
	f.Add("a\n\n\tb\n#a\n", "A")
	f.Fuzz(func(t *testing.T, data, user string) {
		if !ValidUser(user) {
			return
		}
		out, _ := Edit([]byte(data), user, "VALUE")
		n := 0
		for _, l := range bytes.Split(out, []byte("\n")) {
			if strings.EqualFold(lineKey(l), user) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d entries for %q in %q", n, user, out)
		}
		if del, _ := Edit(out, user, ""); bytes.Contains(append([]byte("\n"), del...), []byte("\n"+user+" VALUE\n")) {
			t.Fatalf("entry left after removal: %q", del)
		}
	})
}
