package virtual

import (
	"os"
	"testing"

	"moat/internal/cli"
	"moat/internal/delivery/asuser"
	"moat/internal/testutil"
)

// moatBin is the binary the agent runs as its delivery child.
var moatBin string

func TestMain(m *testing.M) {
	// The fallback child below is this test binary.
	if len(os.Args) == 2 && os.Args[1] == asuser.ChildVerb {
		os.Exit(asuser.ChildMain(cli.OS(), asuser.ChildVerb, nil))
	}
	os.Exit(testutil.RunWithMoat(m, "moat-virtual", &moatBin))
}
