package qmgr

import (
	"strings"
	"testing"
	"time"

	"moat/internal/queue"
)

// FuzzBuildDSN: whatever the envelope, the agents' texts and the returned
// message hold, the notice parses as a three-part RFC 6522 report with
// one delivery-status block per recipient, and nothing in it can add a
// header or end a part early.
func FuzzBuildDSN(f *testing.F) {
	f.Add("bob@mx.test", "x@remote.example", "", "rfc822;x@remote.example", "we do not relay", "", "", "Subject: hi\r\n\r\nbody\r\n", false)
	f.Add("", "a@b", "alias@b", "", "host mx[1.2.3.4] said: 550 no", "mx.b", "smtp; 550 no", "Subject: x\r\n\r\n--boundary\r\n", true)
	f.Add("s\r\nBcc: evil@x", "r\nX: y", "o\r\n\r\n", "", "reason\r\n--", "m\n", "d\r\n\r\n", "no header end", false)
	f.Fuzz(func(t *testing.T, sender, rcpt, orig, orcpt, reason, remote, diag, content string, hdrs bool) {
		m := &Manager{
			now: func() time.Time { return time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC) },
			set: settings{myhostname: "mx.test", dsn: dsnSettings{sizeLimit: 50000}},
		}
		env := &queue.Envelope{Sender: sender, Arrival: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC),
			Size: int64(len(content)),
			Recipients: []queue.Recipient{{Address: rcpt, Orig: orig, ORCPT: orcpt},
				{Address: "second@example.org"}}}
		if hdrs {
			env.Ret = "HDRS"
		}
		r := result{dsn: "5.0.0", reason: reason, remoteMTA: remote, diagnostic: diag}
		items := []bounceItem{{index: 0, res: r}, {index: 1, res: r}}
		b, err := m.buildDSN("4jXnx21TLXz1SWJj", env, strings.NewReader(content), items, dsnNotice{to: sender}, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkFuzzedReport(t, b, "Undelivered Mail Returned to Sender", "failed", "5.0.0")
	})
}

// checkFuzzedReport parses a notice built from fuzzed fields and checks
// what no field may change: the subject, the nine top-level header
// fields, and two recipient blocks with the given Action and Status. It
// returns the report for further checks.
func checkFuzzedReport(t *testing.T, b []byte, subject, action, status string) *report {
	t.Helper()
	rep := parseReport(t, string(b))
	if got := rep.header.Get("Subject"); got != subject {
		t.Fatalf("Subject %q", got)
	}
	if len(rep.header) != 9 {
		t.Fatalf("top-level header has %d fields: %v", len(rep.header), rep.header)
	}
	if len(rep.fields) != 3 {
		t.Fatalf("%d delivery-status blocks, want 3:\n%s", len(rep.fields), rep.bodies[1])
	}
	for _, h := range rep.fields[1:] {
		if h.Get("Final-Recipient") == "" || h.Get("Action") != action || h.Get("Status") != status {
			t.Fatalf("recipient block %v", h)
		}
	}
	return rep
}
