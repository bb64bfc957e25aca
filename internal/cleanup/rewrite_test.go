package cleanup

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"moat/internal/config/configtest"
	"moat/internal/maps"
	"moat/internal/rewrite"
)

func headerRewriter(t *testing.T, mainCF string) *rewrite.Rewriter {
	t.Helper()
	cfg := configtest.Load(t, "myhostname = mx.example.com\nmydomain = example.com\ninet_interfaces = loopback-only\n"+mainCF)
	r, err := rewrite.New(cfg, maps.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Primary address headers are rewritten after header_checks (a REPLACEd
// header too, as Postfix looks the replacement up again); the headers of
// an attached message and the body are not; everything else passes as is.
func TestRewriteHeaders(t *testing.T) {
	r := headerRewriter(t, "canonical_maps = inline:{ {joe@mx.example.com=Joe.Public@example.com} }\n")
	opt := Options{
		Limits:        DefaultLimits(),
		Checks:        hdrChecks(t, "/^Reply-To: old/ REPLACE Reply-To: joe\n"),
		RewriteHeader: r.HeaderFunc(rewrite.HeaderLocal),
	}
	msg := "From: Joe <joe>\r\nTo: bob,\r\n carol@x.example (Carol)\r\nSubject: joe\r\nReply-To: old\r\n" +
		"Content-Type: message/rfc822\r\n\r\nFrom: joe\r\nTo: bob\r\n\r\nFrom: joe\r\n"
	out, _ := run(t, opt, msg)
	want := "From: Joe <Joe.Public@example.com>\r\nTo: bob@mx.example.com,\r\n carol@x.example (Carol)\r\nSubject: joe\r\nReply-To: Joe.Public@example.com\r\n" +
		"Content-Type: message/rfc822\r\n\r\nFrom: joe\r\nTo: bob\r\n\r\nFrom: joe\r\n"
	if out != want {
		t.Fatalf("got\n%q\nwant\n%q", out, want)
	}
}

// The From: cleanup adds for a message without one is rewritten like the
// sender's own (sender_canonical_maps).
func TestRewriteAddedFrom(t *testing.T) {
	r := headerRewriter(t, "sender_canonical_maps = inline:{ {joe@mx.example.com=Joe.Public@example.com} }\n")
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	opt := Options{
		Limits: DefaultLimits(), QueueID: "ABC",
		AddMissing:    &Missing{Time: now, Sender: "joe@mx.example.com", MyHostname: "mx.example.com"},
		RewriteHeader: r.HeaderFunc(rewrite.HeaderLocal),
	}
	out, res := run(t, opt, "Subject: x\r\n\r\nbody\r\n")
	if !strings.Contains(out, "\r\nFrom: Joe.Public@example.com\r\n") || !strings.Contains(strings.Join(res.Added, "\n"), "From: Joe.Public@example.com") {
		t.Fatalf("got %q, added %q", out, res.Added)
	}
}

// A rewritten header that would exceed header_size_limit stays as it was
// received; a rewriting error fails the message.
func TestRewriteLimitsAndErrors(t *testing.T) {
	long := strings.Repeat("l", 300)
	r := headerRewriter(t, "canonical_maps = inline:{ a@x.example="+long+"@example.com }\n")
	lim := DefaultLimits()
	lim.HeaderSize = 200
	opt := Options{Limits: lim, RewriteHeader: r.HeaderFunc(rewrite.HeaderLocal)}
	msg := "To: a@x.example\r\n\r\nb\r\n"
	if out, _ := run(t, opt, msg); out != msg {
		t.Fatalf("got %q", out)
	}
	fail := errors.New("table down")
	opt.RewriteHeader = func(string) (string, error) { return "", fail }
	f := New(io.Discard, opt)
	_, werr := io.WriteString(f, msg)
	cerr := f.Close()
	if !errors.Is(werr, fail) && !errors.Is(cerr, fail) {
		t.Fatalf("errors %v, %v", werr, cerr)
	}
	var out bytes.Buffer
	opt.RewriteHeader = nil
	f = New(&out, opt)
	_, _ = io.WriteString(f, msg)
	_ = f.Close()
	if out.String() != msg {
		t.Fatalf("without a rewriter: %q", out.String())
	}
}
