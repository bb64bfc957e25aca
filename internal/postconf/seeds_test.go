package postconf

import (
	"path/filepath"
	"testing"

	"moat/internal/testutil"
)

// TestSeedsPostconfN checks that `postconf -n` on the seeds' combined valid
// main.cf (testdata/seeds/valid) matches Debian's postconf byte for byte,
// stdout and (as a set of lines) stderr.
func TestSeedsPostconfN(t *testing.T) {
	tool := testutil.PostfixTool(t, "postconf")
	dir := copyConfig(t, filepath.Join(testutil.RepoRoot(t), "testdata", "seeds", "valid"))
	pout, _, prc := runPostfix(t, tool, "-c", dir, "-n")
	mout, _, mrc := runMoat("-c", dir, "-n")
	if pout != mout || prc != mrc {
		t.Errorf("postconf -n differs (exit %d vs %d):\npostfix:\n%s\nmoat:\n%s", prc, mrc, pout, mout)
	}
	compareRun(t, tool, dir, []string{"-n"})
	compareRun(t, tool, dir, []string{"-nf"})
	compareRun(t, tool, dir, []string{"smtp_helo_name"})
}
