package asuser

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"moat/internal/cli"
	"moat/internal/testutil"
)

// moatBin is the moat binary Deliver runs as its child, built once by
// TestMain into a directory every test account can traverse.
var moatBin string

func TestMain(m *testing.M) {
	// The fallback self below is this test binary run as the child.
	if len(os.Args) == 2 && os.Args[1] == ChildVerb {
		os.Exit(ChildMain(cli.OS(), ChildVerb, nil))
	}
	os.Exit(testutil.RunWithMoat(m, "moat-asuser", &moatBin))
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

// noLeak fails the test when goroutines started during it are still
// running shortly after it returned (Run and Deliver wait for theirs).
func noLeak(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		n := 0
		for i := 0; i < 50; i++ {
			if n = runtime.NumGoroutine(); n <= before {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Errorf("%d goroutines after the test, %d before", n, before)
	})
}
