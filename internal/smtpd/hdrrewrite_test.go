package smtpd

import (
	"io"
	"strings"
	"testing"

	"moat/internal/maps"
	"moat/internal/queue"
	"moat/internal/rewrite"
)

// sendHeaders sends one message with the given header block and returns
// the queued content.
func sendHeaders(t *testing.T, h *harness, headers string) string {
	t.Helper()
	c := h.greeted()
	c.cmd("EHLO client.example", "250")
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<b@example.com>", "250")
	c.cmd("DATA", "354")
	c.cmd(headers+"\r\nbody\r\n.", "250")
	c.cmd("QUIT", "221")
	ids := h.messages(queue.Incoming)
	if len(ids) == 0 {
		t.Fatal("nothing queued")
	}
	m, err := h.q.Open(queue.Incoming, ids[len(ids)-1])
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, _ := io.ReadAll(m.Content())
	_ = h.q.Remove(queue.Incoming, ids[len(ids)-1])
	return string(b)
}

func withRewriter(t *testing.T) func(*Server) {
	return func(s *Server) {
		rw, err := rewrite.New(s.d.Config, maps.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rw.Close() })
		s.d.Rewrite = rw
	}
}

// local_header_rewrite_clients: the harness client, 127.0.0.1, is one of
// inet_interfaces (loopback-only here), so by default its headers are
// rewritten; excluded from the list it is a remote client, whose headers
// stay as sent unless remote_header_rewrite_domain is set.
func TestHeaderRewriteClients(t *testing.T) {
	canon := "inline:{ {joe@mx.example.com=Joe.Public@example.com} }"
	for _, tc := range []struct {
		name   string
		params map[string]string
		want   string
	}{
		{"inet_interfaces", map[string]string{"inet_interfaces": "loopback-only", "canonical_maps": canon}, "From: Joe <Joe.Public@example.com>\r\nTo: bob@mx.example.com\r\n"},
		{"remote", map[string]string{"inet_interfaces": "loopback-only", "canonical_maps": canon, "local_header_rewrite_clients": "permit_mynetworks", "mynetworks": "192.0.2.0/24"}, "From: Joe <joe>\r\nTo: bob\r\n"},
		{"remote domain", map[string]string{"inet_interfaces": "loopback-only", "local_header_rewrite_clients": "", "remote_header_rewrite_domain": "domain.invalid"}, "From: Joe <joe@domain.invalid>\r\nTo: bob@domain.invalid\r\n"},
		{"static", map[string]string{"inet_interfaces": "loopback-only", "canonical_maps": canon, "local_header_rewrite_clients": "static:all"}, "From: Joe <Joe.Public@example.com>\r\nTo: bob@mx.example.com\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.params, nil, "", withRewriter(t))
			got := sendHeaders(t, h, "From: Joe <joe>\r\nTo: bob\r\n")
			if !strings.Contains(got, "\r\n"+tc.want+"\r\nbody\r\n") {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
