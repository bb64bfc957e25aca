package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"moat/internal/delivery/smtp/smtpsink"
)

// postsuper runs `moat postsuper -c DIR args` as the admin does (root) and
// returns what it printed.
func postsuper(t *testing.T, s *server, args ...string) string {
	t.Helper()
	o, err := exec.Command(moatBin, append([]string{"postsuper", "-c", s.dir}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("moat postsuper %v: %v\n%s", args, err, o)
	}
	return string(o)
}

// writeTable writes a hash: table's source file and builds it with moat
// postmap, as an admin does after editing it; the table's directory holds
// the main.cf postmap reads.
func writeTable(t *testing.T, path, text string) {
	t.Helper()
	cf := filepath.Join(filepath.Dir(path), "main.cf")
	if err := os.WriteFile(cf, []byte("compatibility_level = 3.6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command(moatBin, "postmap", "-c", filepath.Dir(path), "hash:"+path).CombinedOutput(); err != nil {
		t.Fatalf("moat postmap %s: %v\n%s", path, err, o)
	}
}

// TestRequeueAfterTransportChange is issue 8's "postqueue -f and postsuper
// -r drive retries by hand": two messages are deferred because
// transport_maps sends their domain to a next hop where nothing listens;
// the admin points transport_maps at a live server (Postfix's smtp-sink),
// adds a recipient_canonical_maps entry, rebuilds both with postmap and
// requeues one message by queue ID and the other with "-r ALL deferred".
// Each goes back through cleanup's rewriting into a new queue file
// (postsuper(1)), and after postqueue -f each is delivered exactly once,
// to the rewritten address, through the new route.
func TestRequeueAfterTransportChange(t *testing.T) {
	t.Parallel()
	port := smtpsink.FreePort(t, "127.0.0.91", "127.0.0.92")
	dir := t.TempDir()
	transport := filepath.Join(dir, "transport")
	canonical := filepath.Join(dir, "rcanonical")
	writeTable(t, transport, "away.test smtp:[127.0.0.91]:"+port+"\n")
	writeTable(t, canonical, "nobody@example.invalid nobody@example.invalid\n")
	s := startServer(t, "mynetworks = 127.0.0.0/8\n"+
		"transport_maps = hash:"+transport+"\n"+
		"recipient_canonical_maps = hash:"+canonical+"\n")

	idA := sendVia(t, s, "sender@example.org", "first@away.test", "message A")
	idB := sendVia(t, s, "sender@example.org", "second@away.test", "message B")
	for _, id := range []string{idA, idB} {
		s.waitLog(`postfix/smtp\[\d+\]: `+id+`: to=<[a-z]+@away\.test>, relay=none, .*status=deferred \(connect to 127\.0\.0\.91\[127\.0\.0\.91\]:`+port+`: Connection refused\)`, 30*time.Second)
	}
	if q := postqueue(t, s, "-p"); !strings.Contains(q, idA) || !strings.Contains(q, idB) {
		t.Fatalf("mailq before the requeue:\n%s", q)
	}

	sink := smtpsink.Start(t, "127.0.0.92", port)
	writeTable(t, transport, "away.test smtp:[127.0.0.92]:"+port+"\n")
	writeTable(t, canonical, "first@away.test renamed@away.test\n")
	// A running daemon checks an indexed table for a new postmap build at
	// most once a second, at its next lookup (docs/ARCHITECTURE.md), as
	// Postfix's daemons notice a changed table only between requests; an
	// admin would also wait, or run postfix reload.
	time.Sleep(2500 * time.Millisecond)

	if out := postsuper(t, s, "-r", idA); out != "postsuper: "+idA+": requeued\npostsuper: Requeued: 1 message\n" {
		t.Errorf("postsuper -r %s: %q", idA, out)
	}
	if out := postsuper(t, s, "-r", "ALL", "deferred"); out != "postsuper: Requeued: 1 message\n" {
		t.Errorf("postsuper -r ALL deferred: %q", out)
	}
	// Nothing left under the old IDs; both copies are new queue files.
	if out := postsuper(t, s, "-r", idA, "-r", idB); out != "" {
		t.Errorf("postsuper -r of the old IDs: %q", out)
	}
	postqueue(t, s, "-f")
	relay := regexp.QuoteMeta("127.0.0.92[127.0.0.92]:" + port)
	s.waitLog(`postfix/smtp\[\d+\]: [0-9A-Za-z]+: to=<renamed@away\.test>, orig_to=<first@away\.test>, relay=`+relay+`, .*status=sent \(250 2\.0\.0 Ok\)`, 30*time.Second)
	s.waitLog(`postfix/smtp\[\d+\]: [0-9A-Za-z]+: to=<second@away\.test>, relay=`+relay+`, .*status=sent \(250 2\.0\.0 Ok\)`, 30*time.Second)
	s.waitLogCount(`postfix/qmgr\[\d+\]: [0-9A-Za-z]+: removed`, 2, 10*time.Second)

	// Exactly once each: another flush finds nothing, and the sink holds
	// one copy of each message.
	postqueue(t, s, "-f")
	time.Sleep(time.Second)
	m := sink.Messages()
	var a, b int
	for _, msg := range m {
		a += strings.Count(msg, "\nmessage A\n")
		b += strings.Count(msg, "\nmessage B\n")
	}
	if len(m) != 2 || a != 1 || b != 1 {
		t.Errorf("sink got %d messages (A %d, B %d): %q", len(m), a, b, m)
	}
	if n := len(regexp.MustCompile(`status=sent`).FindAllString(s.log(), -1)); n != 2 {
		t.Errorf("%d deliveries logged, want 2:\n%s", n, s.log())
	}
	if q := postqueue(t, s, "-p"); !strings.Contains(q, "Mail queue is empty") {
		t.Errorf("mailq after delivery:\n%s", q)
	}
}
