// Package testutil has helpers shared by moat's tests: locating the
// repository, Postfix's test vectors in ../shared, and the Postfix binaries
// used as an oracle in differential tests.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// RepoRoot returns the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// PostfixTests returns ../shared/postfix-tests (or $MOAT_POSTFIX_TESTS).
// The vectors are part of the project's contract, so a missing directory
// fails the test instead of skipping it.
func PostfixTests(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("MOAT_POSTFIX_TESTS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(t), "..", "shared", "postfix-tests")
	}
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST.md")); err != nil {
		t.Fatalf("Postfix test vectors not found at %s: %v", dir, err)
	}
	return dir
}

// PostfixTool returns the path of a Postfix command (postconf, postmap,
// postalias, postlog) from Debian's postfix package, the oracle of the
// differential tests.
func PostfixTool(t testing.TB, name string) string {
	t.Helper()
	return Tool(t, name)
}

// Tool returns the path of a program a test runs as a real peer or oracle
// (Postfix's tools, pflogsumm, swaks). When it is missing the test fails
// under CI, where scripts/test-deps installs it, and is skipped elsewhere.
func Tool(t testing.TB, name string) string {
	t.Helper()
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; run scripts/test-deps", name)
	}
	t.Skipf("%s is not installed (scripts/test-deps installs it)", name)
	return ""
}

// WriteOld writes a file (mode 0644) dated an hour back. Postfix's tools
// wait, up to seconds, for a configuration or table file modified within the
// last second to settle, so differential tests backdate what they write.
func WriteOld(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// BuildMoat builds cmd/moat into a new temporary directory that every
// account can traverse (mode 0755), for tests whose code re-executes the
// binary as another user (the delivery children of internal/delivery).
// When the build fails, because another package of a shared working tree
// is mid-change, it copies the running test binary instead: the packages
// that call it link the child's code into their test binaries and dispatch
// its verb in TestMain. The returned function removes the directory.
func BuildMoat(prefix string) (path string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	if err := os.Chmod(dir, 0o755); err != nil {
		cleanup()
		return "", nil, err
	}
	path = filepath.Join(dir, "moat")
	build := exec.Command("go", "build", "-o", path, "moat/cmd/moat")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, berr := build.CombinedOutput(); berr != nil {
		fmt.Fprintf(os.Stderr, "building moat failed (%v), using the test binary as the child:\n%s", berr, out)
		data, err := os.ReadFile(os.Args[0])
		if err == nil {
			err = os.WriteFile(path, data, 0o755)
		}
		if err != nil {
			cleanup()
			return "", nil, err
		}
	}
	return path, cleanup, nil
}

// RunWithMoat is a TestMain body for those packages: it builds the binary
// (BuildMoat), stores its path in *bin, runs the tests and removes the
// binary, returning the exit status for os.Exit.
func RunWithMoat(m *testing.M, prefix string, bin *string) int {
	path, cleanup, err := BuildMoat(prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	*bin = path
	return m.Run()
}
