package maps

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"moat/internal/testutil"
)

// The expectations below were taken from Debian's postmap 3.7.11
// (`postmap -s texthash:FILE`) on the same input.
func TestParseSource(t *testing.T) {
	tests := []struct {
		name, in string
		fold     bool
		want     []Record
		warns    []string
	}{
		{
			name: "basic and folding",
			in:   "Key1   Value One  \nkey2\tv2\n",
			fold: true,
			want: []Record{{"key1", "Value One", 1}, {"key2", "v2", 2}},
		},
		{
			name: "no folding",
			in:   "Key1 V\n",
			want: []Record{{"Key1", "V", 1}},
		},
		{
			name: "folding is ASCII only",
			in:   "K\u00c4Y v6\n",
			fold: true,
			want: []Record{{"k\u00c4y", "v6", 1}},
		},
		{
			name: "continuation keeps the leading blanks",
			in:   "key1 Value One  \n  continued here\n",
			want: []Record{{"key1", "Value One    continued here", 1}},
		},
		{
			name: "comments and blank lines inside a continued entry",
			in:   "key3 a\n\tb\n#c\n c\nk3 x\n\n  cont3\n   \n  # y\n  k4 lead\n",
			want: []Record{{"key3", "a\tb c", 1}, {"k3", "x  cont3  k4 lead", 5}},
		},
		{
			name: "value only on the continuation line",
			in:   "k2\n  cont\n",
			want: []Record{{"k2", "cont", 1}},
		},
		{
			name: "hash inside a value is not a comment",
			in:   "k6 a # b\n",
			want: []Record{{"k6", "a # b", 1}},
		},
		{
			name: "carriage return is trailing whitespace",
			in:   "k\tv\r\n",
			want: []Record{{"k", "v", 1}},
		},
		{
			name:  "line without value",
			in:    "novalue\nk v\n",
			want:  []Record{{"k", "v", 2}},
			warns: []string{"f, line 1: expected format: key whitespace value -- ignoring this line"},
		},
		{
			name: "quoted keys keep their quotes",
			in:   "\"a\\\"b\\\\c d\" v1\n\"\" empty\n\"x y\"z v5\n\"q\"\tv6\nnoq\"x y\" v7\n\"Up Case\" v8\n",
			fold: true,
			want: []Record{{`"a\"b\\c d"`, "v1", 1}, {`""`, "empty", 2}, {`"x y"z`, "v5", 3},
				{`"q"`, "v6", 4}, {`noq"x y"`, "v7", 5}, {`"up case"`, "v8", 6}},
		},
		{
			name:  "unbalanced quote",
			in:    "\"unterminated x\nk4\" v\n",
			warns: []string{`f, line 1: unbalanced '"' in '"unterminated x' -- ignoring this line`, `f, line 2: unbalanced '"' in 'k4" v' -- ignoring this line`},
		},
		{
			name: "backslash escapes outside quotes too",
			in:   "a\\ b v1\n\\\"k3 v\nk\\\nk2\\ v\n",
			want: []Record{{`a\ b`, "v1", 1}, {`\"k3`, "v", 2}},
			warns: []string{"f, line 3: expected format: key whitespace value -- ignoring this line",
				"f, line 4: expected format: key whitespace value -- ignoring this line"},
		},
		{
			name:  "quoted key continued on the next line",
			in:    "\"x\n y\" v\n",
			want:  []Record{{`"x y"`, "v", 1}},
			warns: nil,
		},
		{
			name:  "leading whitespace before any entry",
			in:    "  leading first\nk v\n",
			want:  []Record{{"k", "v", 2}},
			warns: []string{`f, line 1: logical line must not start with whitespace: "  leading first"`},
		},
		{
			name: "duplicates are all returned",
			in:   "a 1\nA 2\n",
			fold: true,
			want: []Record{{"a", "1", 1}, {"a", "2", 2}},
		},
		{
			name: "no final newline",
			in:   "a 1",
			want: []Record{{"a", "1", 1}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSource("f", []byte(tc.in), tc.fold)
			if !slices.Equal(got, tc.want) {
				t.Errorf("records:\n got %+v\nwant %+v", got, tc.want)
			}
			var warns []string
			for _, le := range LineErrors(err) {
				warns = append(warns, le.Error())
			}
			if !slices.Equal(warns, tc.warns) {
				t.Errorf("warnings:\n got %q\nwant %q", warns, tc.warns)
			}
			if (err != nil) != (len(tc.warns) > 0) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

// postfixEnv gives Postfix's tools an empty main.cf, so the test does not
// depend on /etc/postfix.
func postfixEnv(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	testutil.WriteOld(t, filepath.Join(dir, "main.cf"), nil)
	return append(os.Environ(), "MAIL_CONFIG="+dir)
}

// dedupFirst keeps the first record of each key, as postmap does without -r.
func dedupFirst(recs []Record) []Record {
	seen := map[string]bool{}
	var out []Record
	for _, r := range recs {
		if !seen[r.Key] {
			seen[r.Key] = true
			out = append(out, r)
		}
	}
	return out
}

// TestParseSourceDifferential runs Debian's `postmap -s texthash:` and
// ParseSource on the same files and compares the resulting records (sorted:
// postmap -s prints in hash order).
func TestParseSourceDifferential(t *testing.T) {
	postmap := testutil.PostfixTool(t, "postmap")
	env := postfixEnv(t)
	inputs := []string{
		"novalue\n\"quoted key\" val\nKey1   Value One  \n  continued here\n# comment\n\n   \nkey2\tv2\n  # not a comment?\nkey3 a\n\tb\n#c\n c\nkey1 dup\n",
		"\"a\\\"b\\\\c d\" v1\n\"unterminated x\n\"ab\"cd v3\n\"\" empty\n\"x y\"z v5\n\"q\"\tv6\nnoq\"x y\" v7\n\"Up Case\" v8\n",
		"a\\ b v1\n\"c\\\" v2\n\"d\\\\\" v3\n\"e\" \n\"f\"g\"h i\" v5\nK\u00c4Y v6\n",
		"a b\n\"x\n y\" v\nk\\\nk2\\ v\n\\\"k3 v\nk4\" v\n",
		"k1 v\n \nk2\n  cont\nk3 x\n\n  cont3\n  k4 lead\nk5 \"quoted value\"  \n#x\n  # y\nk6 a # b\n",
		"k\tv\r\nk2 v2\\\n  more\n",
	}
	testutil.PostfixTests(t) // the vectors' smtpd_check_access is below
	inputs = append(inputs, string(mustRead(t, filepath.Join(testutil.PostfixTests(t), "smtpd", "smtpd_check_access"))))
	for i, in := range inputs {
		for _, fold := range []bool{true, false} {
			dir := t.TempDir()
			path := filepath.Join(dir, "t")
			testutil.WriteOld(t, path, []byte(in))
			flag := "-s"
			if !fold {
				flag = "-fs"
			}
			cmd := exec.Command(postmap, flag, "texthash:"+path)
			cmd.Env = env
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("postmap: %v", err)
			}
			want := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			slices.Sort(want)
			recs, _ := ParseSource(path, []byte(in), fold)
			var got []string
			for _, r := range dedupFirst(recs) {
				got = append(got, r.Key+"\t"+r.Value)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("input %d fold=%v:\n got %q\nwant %q", i, fold, got, want)
			}
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ExampleParseSource() {
	recs, err := ParseSource("access", []byte("# senders\nspam@spam.com REJECT\nspam.org   REJECT\n"), true)
	fmt.Println(recs, err)
	// Output: [{spam@spam.com REJECT 2} {spam.org REJECT 3}] <nil>
}
