package virtual

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"moat/internal/cli"
	"moat/internal/delivery/asuser"
)

// moatBin is the binary the agent runs as its delivery child.
var moatBin string

func TestMain(m *testing.M) {
	// The fallback child below is this test binary.
	if len(os.Args) == 2 && os.Args[1] == asuser.ChildVerb {
		os.Exit(asuser.ChildMain(cli.OS(), asuser.ChildVerb, nil))
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "moat-virtual")
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
		// Another package of the shared tree may be mid-change; the
		// child's code is asuser's, which this test binary carries.
		fmt.Fprintf(os.Stderr, "building moat failed (%v), using the test binary as the child:\n%s", err, out)
		if err := copyFile(os.Args[0], moatBin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
