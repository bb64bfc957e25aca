// Package configtest builds configurations for other packages' tests: a
// main.cf written into a fresh directory and loaded as a daemon loads it.
package configtest

import (
	"os"
	"path/filepath"
	"testing"

	"moat/internal/config"
)

// Load writes mainCF as main.cf in a new temporary directory and returns
// config.Load's result, failing the test on any error (a test's own
// configuration must be valid; tests of invalid ones call config.Load).
func Load(t testing.TB, mainCF string) *config.Config {
	t.Helper()
	dir := Write(t, mainCF)
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	return cfg
}

// Write writes mainCF as main.cf in a new temporary directory and returns
// the directory.
func Write(t testing.TB, mainCF string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
