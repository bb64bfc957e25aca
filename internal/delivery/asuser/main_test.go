package asuser

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// moatBin is the moat binary Deliver runs as its child, built once by
// TestMain into a directory every test account can traverse.
var moatBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "moat-asuser")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	moatBin = filepath.Join(dir, "moat")
	build := exec.Command("go", "build", "-o", moatBin, "moat/cmd/moat")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building moat: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// account is a throw-away system account for one test, removed when the
// test ends.
func account(t *testing.T) Creds {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create an account and change identity")
	}
	name := "moatt" + strconv.Itoa(rand.IntN(1_000_000))
	out, err := exec.Command("useradd", "-r", "-M", "-s", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return Creds{UID: uint32(uid), GID: uint32(gid), User: name, Home: u.HomeDir}
}

// userDir is a directory owned by cr inside a tree cr can traverse.
func userDir(t *testing.T, cr Creds) string {
	t.Helper()
	base := t.TempDir()
	// t.TempDir's directory and its parent are 0700 (root's).
	for _, p := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := filepath.Join(base, "u")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, int(cr.UID), int(cr.GID)); err != nil {
		t.Fatal(err)
	}
	return d
}
