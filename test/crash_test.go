package test

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"moat/internal/testutil"
)

var (
	queuedAs   = regexp.MustCompile(`<<< 250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)`)
	receivedID = regexp.MustCompile(`\n\tby mx\.moat\.test \(\S+\) with E?SMTP id ([0-9A-Za-z]+)`)
)

// TestCrashKill9 is the "nothing lost" promise under a crash: Postfix's
// smtp-source sends 2000 messages over 20 sessions while moat is killed
// with SIGKILL at a random moment and restarted; smtp-source then sends
// the rest. Every message that got a 250 must end up delivered exactly
// once, and no delivered message may be partial.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	t.Parallel()
	const total = 2000
	s := startServer(t, "")
	tool := testutil.Tool(t, "smtp-source")
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	killAfter := time.Duration(200+rng.Intn(1300)) * time.Millisecond
	t.Logf("seed %d: SIGKILL after %v", seed, killAfter)

	acked := map[string]bool{}
	for round := 0; len(acked) < total && round < 6; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cmd := exec.CommandContext(ctx, tool, "-v", "-s", "20", "-m", strconv.Itoa(total-len(acked)),
			"-l", "2048", "-f", "load@example.org", "-t", "user@mx.moat.test", s.addr())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		if round == 0 {
			time.Sleep(killAfter)
			s.kill()
			s.start()
		}
		cmd.Wait() // smtp-source exits non-zero when its server dies
		cancel()
		before := len(acked)
		for _, m := range queuedAs.FindAllStringSubmatch(out.String(), -1) {
			acked[m[1]] = true
		}
		t.Logf("round %d: %d acknowledged", round, len(acked)-before)
	}
	if len(acked) < total {
		t.Fatalf("only %d of %d messages acknowledged", len(acked), total)
	}

	// Wait until the queue has drained: every committed message delivered.
	deadline := time.Now().Add(2 * time.Minute)
	for !queueEmpty(t, filepath.Join(s.dir, "spool")) {
		if time.Now().After(deadline) {
			t.Fatalf("queue not empty after 2 minutes\n%s", s.log())
		}
		time.Sleep(100 * time.Millisecond)
	}

	seen := map[string]int{}
	bodySize := -1
	files, _ := filepath.Glob(filepath.Join(s.maildir("user"), "new", "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := receivedID.FindSubmatch(b)
		if m == nil {
			t.Errorf("%s: no Received header of moat's", f)
			continue
		}
		seen[string(m[1])]++
		head, body, ok := bytes.Cut(b, []byte("\n\n"))
		if !ok || len(head) == 0 {
			t.Errorf("%s: no header/body separator: partial message", f)
			continue
		}
		if bodySize == -1 {
			bodySize = len(body)
		} else if len(body) != bodySize {
			t.Errorf("%s: body %d bytes, others %d: partial message", f, len(body), bodySize)
		}
	}
	for id := range acked {
		switch seen[id] {
		case 1:
		case 0:
			t.Errorf("%s: acknowledged with 250 but never delivered", id)
		default:
			t.Errorf("%s: delivered %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if !acked[id] && n > 1 {
			t.Errorf("%s (not acknowledged) delivered %d times", id, n)
		}
	}
	t.Logf("%d acknowledged, %d delivered (%d committed but unacknowledged when killed)",
		len(acked), len(files), len(seen)-len(acked))
}

// queueEmpty reports whether no message waits in incoming/ or active/
// (deferred/ counts as settled for this purpose only if empty too).
func queueEmpty(t *testing.T, spool string) bool {
	for _, q := range []string{"incoming", "active", "deferred", "maildrop"} {
		n := 0
		filepath.WalkDir(filepath.Join(spool, q), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		if n > 0 {
			return false
		}
	}
	return true
}
