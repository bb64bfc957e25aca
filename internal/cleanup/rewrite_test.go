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

// FuzzFilterRewrite runs arbitrary messages through the filter with header
// address rewriting on, whole and split: the output must not depend on
// the split, every rewritten header stays within header_size_limit, and
// the body passes untouched.
func FuzzFilterRewrite(f *testing.F) {
	for _, s := range []string{
		"From: Joe <joe>\r\nTo: a, b@x\r\n\tc (C)\r\nSubject: s\r\n\r\nFrom: joe\r\n",
		"To: g: a, b;\n\nbody", "From: \"q\" <x@[1.2.3.4]>\n\n", "Cc: <a\n\n", "From: joe\n",
	} {
		f.Add([]byte(s), uint16(3))
	}
	cfg := configtest.Load(f, "myhostname = mx.example.com\nmydomain = example.com\ninet_interfaces = loopback-only\n"+
		"canonical_maps = inline:{ {joe@mx.example.com=Joe.Public@example.com} }\nmasquerade_domains = example.com\n")
	r, err := rewrite.New(cfg, maps.DefaultOptions())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	lim := Limits{HeaderSize: 64, LineLength: 16, Nesting: 4}
	runOnce := func(t *testing.T, msg []byte, split int) []byte {
		var out bytes.Buffer
		fl := New(&out, Options{Limits: lim, QueueID: "Q", RewriteHeader: r.HeaderFunc(rewrite.HeaderLocal)})
		if _, err := fl.Write(msg[:split]); err != nil {
			t.Fatal(err)
		}
		if _, err := fl.Write(msg[split:]); err != nil {
			t.Fatal(err)
		}
		if err := fl.Close(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	f.Fuzz(func(t *testing.T, msg []byte, at uint16) {
		if len(msg) > 1<<14 {
			return
		}
		split := int(at) % (len(msg) + 1)
		whole := runOnce(t, msg, 0)
		if parts := runOnce(t, msg, split); !bytes.Equal(whole, parts) {
			t.Fatalf("output depends on the split at %d:\n%q\n%q", split, whole, parts)
		}
		plain := runOnce2(t, lim, msg)
		// Only the header block may differ.
		hw, bw, _ := bytes.Cut(whole, []byte("\r\n\r\n"))
		hp, bp, _ := bytes.Cut(plain, []byte("\r\n\r\n"))
		if !bytes.Equal(bw, bp) {
			t.Fatalf("body changed:\n%q\n%q", plain, whole)
		}
		if bytes.Count(hw, []byte("\r\n")) < bytes.Count(hp, []byte("\r\n")) {
			t.Fatalf("lines lost:\n%q\n%q", plain, whole)
		}
	})
}

func runOnce2(t *testing.T, lim Limits, msg []byte) []byte {
	var out bytes.Buffer
	fl := New(&out, Options{Limits: lim, QueueID: "Q"})
	if _, err := fl.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := fl.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
