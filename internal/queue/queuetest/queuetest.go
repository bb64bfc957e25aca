// Package queuetest sets up what the queue commands' tests share: a
// configuration directory whose main.cf names a fresh queue directory, and
// that queue opened with the options main.cf implies.
package queuetest

import (
	"os"
	"path/filepath"
	"testing"

	"moat/internal/config"
	"moat/internal/queue"
)

// Fixture is a configuration directory and its queue in a test's temporary
// directory.
type Fixture struct {
	ConfigDir string // holds main.cf
	QueueDir  string
	Queue     *queue.Queue
}

// New writes main.cf (queue_directory plus extra, more main.cf lines) and
// creates the queue it names.
func New(t testing.TB, extra string) *Fixture {
	t.Helper()
	root := t.TempDir()
	f := &Fixture{ConfigDir: filepath.Join(root, "etc"), QueueDir: filepath.Join(root, "spool")}
	if err := os.Mkdir(f.ConfigDir, 0o755); err != nil {
		t.Fatal(err)
	}
	mainCF := "queue_directory = " + f.QueueDir + "\n" + extra
	if err := os.WriteFile(filepath.Join(f.ConfigDir, "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(f.ConfigDir)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := queue.OptionsFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts.Create = true
	if f.Queue, err = queue.Open(f.QueueDir, opts); err != nil {
		t.Fatal(err)
	}
	return f
}
