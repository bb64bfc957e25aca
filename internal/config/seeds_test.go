package config

import (
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/testutil"
)

// TestSeedsObsolete checks that the seeds' obsolete fragments are errors
// naming the file, the line and the replacement, and that the combined
// valid fragments load cleanly.
func TestSeedsObsolete(t *testing.T) {
	root := filepath.Join(testutil.RepoRoot(t), "testdata", "seeds")
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{"obsolete-rbl", []string{
			"obsolete-rbl/main.cf, line 2: parameter maps_rbl_domains is obsolete: use reject_rbl_client DOMAIN",
		}},
		{"obsolete-dsa", []string{
			"obsolete-dsa/main.cf, line 2: parameter smtpd_tls_dcert_file is obsolete: use smtpd_tls_eccert_file",
			"obsolete-dsa/main.cf, line 3: parameter smtpd_tls_dkey_file is obsolete: use smtpd_tls_eckey_file",
		}},
	} {
		_, err := Load(filepath.Join(root, tc.dir))
		if err == nil {
			t.Errorf("%s: Load succeeded, want errors", tc.dir)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", tc.dir, err, w)
			}
		}
	}
	c, err := Load(filepath.Join(root, "valid"))
	if err != nil {
		t.Fatalf("valid seeds: %v", err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("valid seeds: warnings %q", w)
	}
	if got := c.Get("smtp_helo_name"); got != "abcd.kororo.jp" {
		t.Errorf("smtp_helo_name = %q", got)
	}
}
