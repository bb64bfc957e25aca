package mastercf

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"moat/internal/testutil"
)

// TestBadFiles checks that each testdata/mastercf/bad file fails with the
// exact error its first line gives ("# error: MESSAGE").
func TestBadFiles(t *testing.T) {
	dir := filepath.Join(testutil.RepoRoot(t), "testdata", "mastercf")
	files, err := filepath.Glob(filepath.Join(dir, "bad", "*.cf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad master.cf files: %v", err)
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(string(data), "\n")
		want, ok := strings.CutPrefix(first, "# error: ")
		if !ok {
			t.Errorf("%s: first line must be \"# error: MESSAGE\"", path)
			continue
		}
		rel, _ := filepath.Rel(dir, path)
		_, err = Parse(rel, data)
		if err == nil {
			t.Errorf("%s: parsed without error, want %s", rel, want)
			continue
		}
		if err.Error() != want {
			t.Errorf("%s:\n got: %v\nwant: %s", rel, err, want)
		}
	}
}

// TestSeed002 checks that both corrections of seed 002's submission entry
// give the overrides the seed meant.
func TestSeed002(t *testing.T) {
	want := map[string]string{
		"smtpd_sasl_auth_enable":       "yes",
		"smtp_sasl_security_options":   "noplaintext,noanonymous",
		"broken_sasl_auth_clients":     "yes",
		"smtpd_client_restrictions":    "",
		"smtpd_helo_restrictions":      "",
		"smtpd_sender_restrictions":    "",
		"smtpd_recipient_restrictions": "permit_sasl_authenticated,reject",
		"smtpd_data_restrictions":      "",
	}
	dir := filepath.Join(testutil.RepoRoot(t), "testdata", "mastercf")
	for _, name := range []string{"seed002-corrected.cf", "seed002-braced.cf"} {
		f, err := Load(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		s := f.Lookup("submission", "inet")
		if s == nil {
			t.Fatalf("%s: no submission/inet", name)
		}
		got := s.OverrideMap()
		if name == "seed002-braced.cf" {
			// The braced form keeps the value's own spacing.
			want["smtp_sasl_security_options"] = "noplaintext, noanonymous"
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: overrides\n got %v\nwant %v", name, got, want)
		}
	}
}

func TestParseEntry(t *testing.T) {
	src := "# head\n" +
		"smtp inet n - y - - smtpd\n" +
		"  -o a=1\n" +
		"# between\n" +
		"\t-o { b = two words } -vo c=3 -o a=4 plain {x y} -o notopt\n" +
		"pipe unix - n n 10? 2 pipe flags=R argv=/bin/cat { -a b }\n"
	f, err := Parse("master.cf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Services) != 2 {
		t.Fatalf("got %d services", len(f.Services))
	}
	s := f.Services[0]
	wantArgs := []string{"-o", "a=1", "-o", "b=two words", "-v", "-o", "c=3", "-o", "a=4", "plain", "x y", "-o", "notopt"}
	if !reflect.DeepEqual(s.Args, wantArgs) {
		t.Errorf("args %q, want %q", s.Args, wantArgs)
	}
	wantO := []Override{{"a", "1", 3}, {"b", "two words", 5}, {"c", "3", 5}, {"a", "4", 5}}
	if !reflect.DeepEqual(s.Overrides, wantO) {
		t.Errorf("overrides %v, want %v", s.Overrides, wantO)
	}
	if m := s.OverrideMap(); m["a"] != "4" || len(m) != 3 {
		t.Errorf("OverrideMap %v: the last -o of a name wins", m)
	}
	if m := s.DaemonOverrides(); m["a"] != "4" || m["service_name"] != "smtp" || len(m) != 4 {
		t.Errorf("DaemonOverrides %v: the -o values and service_name", m)
	}
	if wantText := "smtp inet n - y - - smtpd\n  -o a=1\n\t-o { b"; s.Line != 2 || !strings.HasPrefix(s.Text, wantText) {
		t.Errorf("Line %d Text %q", s.Line, s.Text)
	}
	p := f.Services[1]
	if p.Wakeup != "10?" || p.Maxproc != "2" || p.Private != "-" || p.Unpriv != "n" {
		t.Errorf("columns %+v", p)
	}
	if got := p.Args[len(p.Args)-1]; got != "-a b" {
		t.Errorf("braced argument %q, want %q", got, "-a b")
	}
	var b strings.Builder
	if err := f.WriteM(&b, false, []string{"pipe"}); err != nil {
		t.Fatal(err)
	}
	if want := "pipe       unix  -       n       n       10?     2       pipe flags=R argv=/bin/cat {-a b}\n"; b.String() != want {
		t.Errorf("WriteM:\n got %q\nwant %q", b.String(), want)
	}
}

func TestFilterErrors(t *testing.T) {
	f, err := Parse("master.cf", []byte("smtp inet n - y - - smtpd -o a=1\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, c := range []struct {
		kind byte
		arg  string
	}{{'M', "a/b/c"}, {'M', ""}, {'M', "/smtp"}, {'M', "sm*"}, {'F', "smtp/inet/bogus"}, {'P', "a/b/c/d"}} {
		switch c.kind {
		case 'M':
			err = f.WriteM(&b, false, []string{c.arg})
		case 'F':
			err = f.WriteF(&b, []string{c.arg})
		default:
			err = f.WriteP(&b, []string{c.arg})
		}
		if err == nil {
			t.Errorf("-%c %q: no error", c.kind, c.arg)
		}
	}
	if b.Len() != 0 {
		t.Errorf("output before a filter error: %q", b.String())
	}
	got := f.Unmatched('P', []string{"smtp", "smtp/inet/b", "relay", "smtp/inet/a"})
	if want := []string{"smtp/inet/b", "relay"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Unmatched %q, want %q", got, want)
	}
}
