package lmtp

import (
	"net"
	"testing"

	"moat/internal/delivery"
)

// The agent reports a site failure (the hop status the queue manager's
// concurrency feedback and dead-destination throttling use) when no
// server answered, the greeting was refused or the connection was lost,
// and not for a recipient's own 4xx or 5xx reply.
func TestSiteFailure(t *testing.T) {
	all := func(res []delivery.Result, want bool) {
		t.Helper()
		for _, r := range res {
			if r.SiteFailure != want {
				t.Errorf("SiteFailure %v, want %v: %+v", r.SiteFailure, want, r)
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	a := newAgent(t, t.TempDir(), map[string]string{"lmtp_connection_cache_on_demand": "no"})
	all(deliver(t, a, request("inet:"+closed, msg, "a@example.com", "b@example.com")), true)

	greet := newFake(t)
	greet.greeting = "421 4.3.2 shutting down"
	greet.start()
	all(deliver(t, a, request(greet.addr, msg, "a@example.com")), true)

	drop := newFake(t)
	drop.dropInData = 1
	drop.start()
	all(deliver(t, a, request(drop.addr, msg, "a@example.com")), true)

	rcpt := newFake(t)
	rcpt.rcpt["full@example.com"] = "452 4.2.2 Mailbox full"
	rcpt.rcpt["gone@example.com"] = "550 no such user here"
	rcpt.start()
	all(deliver(t, a, request("inet:"+rcpt.addr, msg, "ok@example.com", "full@example.com", "gone@example.com")), false)
}
