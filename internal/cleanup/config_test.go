package cleanup

import (
	"os"
	"path/filepath"
	"testing"

	"moat/internal/config"
	"moat/internal/maps"
)

func TestFromConfig(t *testing.T) {
	dir := t.TempDir()
	hc := filepath.Join(dir, "header_checks")
	if err := os.WriteFile(hc, []byte("/^Received:/ IGNORE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	main := "header_checks = regexp:" + hc + "\nbody_checks_size_limit = 1000\nalways_add_missing_headers = yes\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := FromConfig(c, maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// mime_ and nested_header_checks default to $header_checks: the same
	// table, opened once.
	if len(s.Checks.Header) != 1 || len(s.Checks.MIME) != 1 || s.Checks.MIME[0] != s.Checks.Header[0] || s.Checks.Nested[0] != s.Checks.Header[0] {
		t.Errorf("checks %+v", s.Checks)
	}
	if len(s.Checks.Body) != 0 || len(s.tables) != 1 {
		t.Errorf("body checks %v, %d tables", s.Checks.Body, len(s.tables))
	}
	if s.BodyChecksSizeLimit != 1000 || !s.AlwaysAddMissing || s.HopcountLimit != 50 || s.Limits != DefaultLimits() {
		t.Errorf("settings %+v", s)
	}
	if o := s.Options(); o.BodyChecksSizeLimit != 1000 || o.HopcountLimit != 50 {
		t.Errorf("options %+v", o)
	}
}
