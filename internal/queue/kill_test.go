package queue

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKilledWriterLosesNothing runs a child process that commits messages
// from several goroutines and prints each ID once Commit returns, kills it
// with SIGKILL mid-stream, then recovers the queue. Every printed
// (acknowledged) ID must be present and whole, and no temporary file may
// remain. What it proves: a process crash at any point of a commit loses no
// acknowledged message and leaves nothing half-written in view. A power cut
// (unflushed page cache) is beyond a test in a process; fsync ordering
// covers that, and the server's kill -9 test will exercise it again.
func TestKilledWriterLosesNothing(t *testing.T) {
	if os.Getenv("MOAT_QUEUE_CHILD") != "" {
		t.Skip("child")
	}
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := filepath.Join(t.TempDir(), "spool")
	if _, err := Open(dir, Options{Create: true}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestQueueChildCommitter$")
	cmd.Env = append(os.Environ(), "MOAT_QUEUE_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(400 * time.Millisecond)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
			acked = append(acked, id)
		}
		if len(acked) >= 50 && time.Now().After(deadline) {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	for sc.Scan() { // IDs printed before the kill are acknowledged too
		if id, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
			acked = append(acked, id)
		}
	}
	cmd.Wait()
	if len(acked) == 0 {
		t.Fatal("child committed nothing")
	}

	q, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := q.Recover(true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d acknowledged; recovery: %+v", len(acked), st)
	if st.Corrupt != 0 {
		t.Errorf("%d files corrupt after kill", st.Corrupt)
	}
	for _, id := range acked {
		data, err := os.ReadFile(filepath.Join(dir, Incoming, id))
		if err != nil {
			t.Errorf("acknowledged %s lost: %v", id, err)
			continue
		}
		env, err := ReadFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Errorf("acknowledged %s damaged: %v", id, err)
		} else if env.Size != 4096 {
			t.Errorf("acknowledged %s: size %d", id, env.Size)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, Incoming))
	for _, e := range ents {
		if !ValidID(e.Name()) {
			t.Errorf("left in incoming after recovery: %s", e.Name())
		}
	}
}

// TestQueueChildCommitter is the child of TestKilledWriterLosesNothing.
func TestQueueChildCommitter(t *testing.T) {
	dir := os.Getenv("MOAT_QUEUE_CHILD")
	if dir == "" {
		t.Skip("run by TestKilledWriterLosesNothing")
	}
	q, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	content := strings.Repeat("x", 4096)
	ids := make(chan string)
	for g := 0; g < 8; g++ {
		go func() {
			for {
				w, err := q.NewMessage()
				if err != nil {
					panic(err)
				}
				w.Envelope = testEnvelope()
				w.WriteString(content[:2048])
				w.WriteString(content[2048:])
				id, err := w.Commit()
				if err != nil {
					panic(err)
				}
				ids <- id
			}
		}()
	}
	for id := range ids {
		fmt.Printf("committed %s\n", id)
	}
}
