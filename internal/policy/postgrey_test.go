package policy

import (
	"strings"
	"testing"
	"time"

	"moat/internal/testutil/postgrey"
)

// greylisted reports postgrey's default greylist action:
// "DEFER_IF_PERMIT 4.2.0 Greylisted, see http://...".
func greylisted(action string) bool {
	return strings.HasPrefix(action, "DEFER_IF_PERMIT ") && strings.Contains(action, "Greylisted")
}

// Greylisting against the real postgrey: the first attempt of a triplet is
// deferred, a retry after the delay passes with postgrey's X-Greylist
// header, over one reused connection.
func TestPostgrey(t *testing.T) {
	const delay = 2
	ep := "inet:" + postgrey.Start(t, delay)
	p := NewPool()
	defer p.Close()
	s := fast(ep)
	s.Timeout = 10 * time.Second
	c := p.Client(s)
	r := &Request{
		ProtocolState: "RCPT", ProtocolName: "ESMTP", HeloName: "client.example",
		Sender: "sender@client.example", Recipient: "user@moat.example", ClientAddress: "192.0.2.25",
		ClientName: "unknown", ReverseClientName: "unknown", ClientPort: "40000", Instance: "1.1.1",
		ServerAddress: "127.0.0.1", ServerPort: "25",
	}
	got, err := c.Query(t.Context(), r)
	if err != nil || !greylisted(got) {
		t.Fatalf("first attempt = %q, %v; want DEFER_IF_PERMIT Greylisted ...", got, err)
	}
	// A retry inside the delay is still greylisted.
	got, err = c.Query(t.Context(), r)
	if err != nil || !greylisted(got) {
		t.Fatalf("early retry = %q, %v", got, err)
	}
	time.Sleep((delay + 1) * time.Second)
	got, err = c.Query(t.Context(), r)
	if err != nil || !(strings.HasPrefix(got, "PREPEND X-Greylist: delayed ") || got == "DUNNO") {
		t.Fatalf("retry after the delay = %q, %v; want PREPEND X-Greylist: ... or DUNNO", got, err)
	}
	// Another triplet is greylisted on its own.
	r2 := *r
	r2.Sender = "other@client.example"
	if got, _ := c.Query(t.Context(), &r2); !strings.HasPrefix(got, "DEFER_IF_PERMIT") {
		t.Errorf("new triplet = %q", got)
	}
	if c.dials != 1 {
		t.Errorf("%d connections to postgrey, want 1 reused", c.dials)
	}
}
