package cleanup

import (
	"bytes"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"moat/internal/maillog"
	"moat/internal/maps"
)

func run(t *testing.T, opt Options, msg string) (string, *Result) {
	t.Helper()
	var out bytes.Buffer
	f := New(&out, opt)
	if _, err := io.WriteString(f, msg); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String(), f.Result()
}

func hdrChecks(t *testing.T, rules string) Checks {
	t.Helper()
	tab, err := maps.ParseRegexpTable("header_checks", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	return Checks{Header: []maps.Table{tab}, MIME: []maps.Table{tab}, Nested: []maps.Table{tab}}
}

func bodyChecks(t *testing.T, rules string) Checks {
	t.Helper()
	tab, err := maps.ParseRegexpTable("body_checks", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	return Checks{Body: []maps.Table{tab}}
}

const simple = "Subject: hello\r\nFrom: a@example.com\r\n\r\nline one\r\nspam here\r\n"

func TestActions(t *testing.T) {
	env := maillog.Envelope{Sender: "a@example.com", HasSender: true, Recipient: "b@example.org", HasRecipient: true, Proto: "ESMTP", Helo: "client.example"}
	for _, tc := range []struct {
		name    string
		checks  Checks
		out     string
		check   func(*Result) string
		wantLog string
	}{
		{"dunno", hdrChecks(t, "/^Subject:/ DUNNO\n"), simple, nil, ""},
		{"ok is dunno", hdrChecks(t, "/^Subject:/ OK\n"), simple, nil, ""},
		{"ignore", hdrChecks(t, "/^Subject:/ IGNORE\n"), "From: a@example.com\r\n\r\nline one\r\nspam here\r\n", nil, ""},
		{"strip", hdrChecks(t, "/^Subject:/ STRIP gone\n"), "From: a@example.com\r\n\r\nline one\r\nspam here\r\n", nil,
			"Q1: strip: header Subject: hello from c[192.0.2.1]; from=<a@example.com> to=<b@example.org> proto=ESMTP helo=<client.example>: gone"},
		{"warn", hdrChecks(t, "/^Subject:/ WARN look\n"), simple, nil,
			"Q1: warning: header Subject: hello from c[192.0.2.1]; from=<a@example.com> to=<b@example.org> proto=ESMTP helo=<client.example>: look"},
		{"info", bodyChecks(t, "/spam/ INFO seen\n"), simple, nil,
			"Q1: info: body spam here from c[192.0.2.1]; from=<a@example.com> to=<b@example.org> proto=ESMTP helo=<client.example>: seen"},
		{"prepend header", hdrChecks(t, "/^Subject:/ PREPEND X-Tag: yes\n"), "X-Tag: yes\r\n" + simple, nil, ""},
		{"prepend header bad label", hdrChecks(t, "/^Subject:/ PREPEND no label\n"), simple, nil,
			"Q1: warning: header Subject: hello from c[192.0.2.1]; from=<a@example.com> to=<b@example.org> proto=ESMTP helo=<client.example>: bad PREPEND header text, need \"headername: headervalue\": no label"},
		{"prepend body", bodyChecks(t, "/spam/ PREPEND X-Spam: yes\n"), "Subject: hello\r\nFrom: a@example.com\r\n\r\nline one\r\nX-Spam: yes\r\nspam here\r\n", nil, ""},
		{"replace header", hdrChecks(t, "/^Subject: (.*)/ REPLACE Subject: [ext] $1\n"), "Subject: [ext] hello\r\nFrom: a@example.com\r\n\r\nline one\r\nspam here\r\n", nil, ""},
		{"replace body", bodyChecks(t, "/spam/ REPLACE ham\n"), "Subject: hello\r\nFrom: a@example.com\r\n\r\nline one\r\nham\r\n", nil, ""},
		{"reject", bodyChecks(t, "/spam/ REJECT no spam\n"), "Subject: hello\r\nFrom: a@example.com\r\n\r\nline one\r\n", func(r *Result) string {
			if r.Reject != "5.7.1 no spam" {
				return "Reject = " + r.Reject
			}
			return ""
		}, "Q1: reject: body spam here from c[192.0.2.1]; from=<a@example.com> to=<b@example.org> proto=ESMTP helo=<client.example>: 5.7.1 no spam"},
		{"reject default with code", hdrChecks(t, "/^Subject:/ REJECT\n/^From:/ REJECT 4.7.0 later\n"), "", func(r *Result) string {
			if r.Reject != "5.7.1 message content rejected" {
				return "Reject = " + r.Reject
			}
			return ""
		}, ""},
		{"reject keeps code", hdrChecks(t, "/^From:/ REJECT 4.7.0 later\n"), "Subject: hello\r\n", func(r *Result) string {
			if r.Reject != "4.7.0 later" {
				return "Reject = " + r.Reject
			}
			return ""
		}, ""},
		{"discard stops inspection", hdrChecks(t, "/^Subject:/ DISCARD\n/^From:/ HOLD\n"), "", func(r *Result) string {
			if !r.Discard || r.Hold {
				return "want discard, no hold"
			}
			return ""
		}, ""},
		{"hold", hdrChecks(t, "/^From:/ HOLD\n"), simple, func(r *Result) string {
			if !r.Hold {
				return "no hold"
			}
			return ""
		}, ""},
		{"redirect filter bcc", hdrChecks(t, "/^Subject:/ REDIRECT x@example.net\n/^From:/ FILTER smtp:[127.0.0.1]:10025\n/^$/ BCC c@example.net\n"), simple, func(r *Result) string {
			if r.Redirect != "x@example.net" || r.Filter != "smtp:[127.0.0.1]:10025" {
				return "redirect/filter: " + r.Redirect + " " + r.Filter
			}
			return ""
		}, ""},
		{"bcc", bodyChecks(t, "/spam/ BCC c@example.net\n/line/ BCC c@example.net\n"), simple, func(r *Result) string {
			if len(r.BCC) != 1 || r.BCC[0] != "c@example.net" {
				return "BCC wrong"
			}
			return ""
		}, ""},
		{"pass stops inspection", hdrChecks(t, "/^Subject:/ PASS trusted\n/^From:/ REJECT\n"), simple, func(r *Result) string {
			if r.Reject != "" {
				return "rejected after PASS"
			}
			return ""
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, res := run(t, Options{Checks: tc.checks, QueueID: "Q1", Origin: "c[192.0.2.1]", Env: env}, simple)
			if out != tc.out {
				t.Errorf("output\n got %q\nwant %q", out, tc.out)
			}
			if tc.check != nil {
				if msg := tc.check(res); msg != "" {
					t.Error(msg)
				}
			}
			if tc.wantLog != "" && (len(res.Logs) == 0 || res.Logs[0] != tc.wantLog) {
				t.Errorf("logs %q\nwant %q", res.Logs, tc.wantLog)
			}
		})
	}
}

func TestFoldedHeaderMatchedWhole(t *testing.T) {
	msg := "Subject: part one\r\n\tpart two\r\nX: y\r\n\r\nbody\r\n"
	// The pattern spans the fold: it sees one logical header.
	out, res := run(t, Options{Checks: hdrChecks(t, "/^Subject: part one[[:space:]]+part two$/ WARN folded\n"), QueueID: "Q"}, msg)
	if out != msg {
		t.Errorf("output %q", out)
	}
	if len(res.Logs) != 1 || !strings.Contains(res.Logs[0], "warning: header Subject: part one??part two from unknown;: folded") {
		t.Errorf("logs %q", res.Logs)
	}
}

func TestMIMEClasses(t *testing.T) {
	msg := "Subject: top\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n" +
		"--b1\r\nContent-Type: text/plain\r\nX-Part: one\r\n\r\nhello\r\n" +
		"--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nX-Inner: 1\r\n\r\ninner body\r\n" +
		"--b1--\r\nepilogue\r\n"
	var classes []string
	tab := func(tag string) maps.Table {
		tb, err := maps.ParseRegexpTable(tag, []byte("/^/ WARN "+tag+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		return tb
	}
	c := Checks{Header: []maps.Table{tab("header")}, MIME: []maps.Table{tab("mime")}, Nested: []maps.Table{tab("nested")}, Body: []maps.Table{tab("body")}}
	out, _ := run(t, Options{Checks: c, Log: func(r string) {
		i := strings.LastIndex(r, ": ")
		j := strings.Index(r, ": ")
		classes = append(classes, r[i+2:]+" "+strings.SplitN(r[j+2:], " from ", 2)[0])
	}}, msg)
	if out != msg {
		t.Errorf("output changed:\n%q", out)
	}
	want := []string{
		"header warning: header Subject: top",
		"mime warning: header MIME-Version: 1.0",
		"mime warning: header Content-Type: multipart/mixed; boundary=\"b1\"",
		"body warning: body preamble",
		"body warning: body --b1",
		"mime warning: header Content-Type: text/plain",
		"mime warning: header X-Part: one",
		"body warning: body hello",
		"body warning: body --b1",
		"mime warning: header Content-Type: message/rfc822",
		"nested warning: header Subject: inner",
		"nested warning: header X-Inner: 1",
		"body warning: body inner body",
		"body warning: body --b1--",
		"body warning: body epilogue",
	}
	if strings.Join(classes, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(classes, "\n"), strings.Join(want, "\n"))
	}
}

func TestOversizedHeader(t *testing.T) {
	long := "Subject: " + strings.Repeat("x", 200) + "\r\n\t" + strings.Repeat("y", 200) + "\r\n"
	msg := long + "X: y\r\n\r\nbody\r\n"
	out, res := run(t, Options{Limits: Limits{HeaderSize: 100}}, msg)
	want := "Subject: " + strings.Repeat("x", 91) + "\r\nX: y\r\n\r\nbody\r\n"
	if out != want {
		t.Errorf("got %q\nwant %q", out, want)
	}
	if res.MIMEErrors&ErrTruncatedHeader == 0 {
		t.Error("no truncation error")
	}
	// The excess of a fold is dropped too, and the rest of the header
	// block still parses.
	out, _ = run(t, Options{Limits: Limits{HeaderSize: 20}}, "Subject: abc\r\n\tdefghijklmnop\r\nX: y\r\n\r\nb\r\n")
	if want := "Subject: abc\r\n\tdefghi\r\nX: y\r\n\r\nb\r\n"; out != want {
		t.Errorf("got %q\nwant %q", out, want)
	}
}

func TestLongBodyLinePieces(t *testing.T) {
	line := strings.Repeat("a", 5000)
	msg := "S: x\r\n\r\n" + line + "\r\nspam\r\n"
	out, _ := run(t, Options{Limits: Limits{LineLength: 2048}}, msg)
	if out != msg {
		t.Errorf("long line changed")
	}
	// A line dropped by its first piece is dropped whole.
	out, _ = run(t, Options{Checks: bodyChecks(t, "/^aaa/ IGNORE\n")}, msg)
	if out != "S: x\r\n\r\nspam\r\n" {
		t.Errorf("got %q", out)
	}
}

func TestBodyChecksSizeLimit(t *testing.T) {
	msg := "S: x\r\n\r\n" + strings.Repeat("filler\r\n", 20) + "spam\r\n"
	_, res := run(t, Options{Checks: bodyChecks(t, "/spam/ REJECT\n"), BodyChecksSizeLimit: 100}, msg)
	if res.Reject != "" {
		t.Error("body_checks looked past body_checks_size_limit")
	}
	_, res = run(t, Options{Checks: bodyChecks(t, "/spam/ REJECT\n"), BodyChecksSizeLimit: 1000}, msg)
	if res.Reject == "" {
		t.Error("body_checks missed the line")
	}
}

func TestReceivedAndMissingHeaders(t *testing.T) {
	when := time.Date(2026, 11, 2, 7, 8, 9, 0, time.UTC)
	rcv := FormatReceived(ReceivedInfo{Helo: "client.example", ClientName: "unknown", ClientAddr: "192.0.2.1",
		MyHostname: "mx.example.org", MailName: "moat", Protocol: "ESMTP", QueueID: "4Nx3", Recipients: []string{"b@example.org"}, Time: when})
	out, res := run(t, Options{Received: rcv, QueueID: "4Nx3",
		AddMissing: &Missing{Time: when, Sender: "a@example.com", FullName: "A. User", MyHostname: "mx.example.org"}}, "Subject: s\r\n\r\nbody\r\n")
	want := "Received: from client.example (unknown [192.0.2.1])\r\n" +
		"\tby mx.example.org (moat) with ESMTP id 4Nx3\r\n" +
		"\tfor <b@example.org>; Mon,  2 Nov 2026 07:08:09 +0000 (UTC)\r\n" +
		"Subject: s\r\n" +
		"Date: Mon,  2 Nov 2026 07:08:09 +0000 (UTC)\r\n" +
		"From: \"A. User\" <a@example.com>\r\n" +
		"Message-Id: <20261102070809.4Nx3@mx.example.org>\r\n" +
		"\r\nbody\r\n"
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	if len(res.Added) != 4 {
		t.Errorf("added %q", res.Added)
	}
	// The seed's /^Received:/ IGNORE applies to moat's own header too.
	out, _ = run(t, Options{Received: rcv, Checks: hdrChecks(t, "/^Received:/ IGNORE\n")}, "Subject: s\r\n\r\nbody\r\n")
	if out != "Subject: s\r\n\r\nbody\r\n" {
		t.Errorf("got %q", out)
	}
	// Resent- headers make the Resent- forms the missing ones.
	out, _ = run(t, Options{QueueID: "Q", AddMissing: &Missing{Time: when, MyHostname: "h"}},
		"Resent-From: x@y\r\nDate: d\r\n\r\n")
	if want := "Resent-From: x@y\r\nDate: d\r\nResent-Date: Mon,  2 Nov 2026 07:08:09 +0000 (UTC)\r\nResent-Message-Id: <20261102070809.Q@h>\r\n\r\n"; out != want {
		t.Errorf("got %q\nwant %q", out, want)
	}
}

func TestFormatReceivedVariants(t *testing.T) {
	when := time.Date(2026, 10, 17, 13, 57, 37, 0, time.UTC)
	base := ReceivedInfo{Helo: "", ClientName: "mail.example", ClientAddr: "IPv6:2001:db8::1",
		MyHostname: "mx.example.org", MailName: "moat", Protocol: "ESMTPSA", QueueID: "ABC",
		Recipients: []string{"a@x", "b@x"}, Time: when, AuthSender: "kim",
		TLS: &TLSInfo{Version: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256", UsedBits: 128, CipherBits: 128,
			KeyExchange: "X25519", ServerSignature: "RSA-PSS", ServerSigBits: 4096, ServerDigest: "SHA256"}}
	want := "Received: from mail.example (mail.example [IPv6:2001:db8::1])\n" +
		"\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)\n" +
		"\t key-exchange X25519 server-signature RSA-PSS (4096 bits) server-digest SHA256)\n" +
		"\t(No client certificate requested)\n" +
		"\t(Authenticated sender: kim)\n" +
		"\tby mx.example.org (moat) with ESMTPSA id ABC;\n" +
		"\tSat, 17 Oct 2026 13:57:37 +0000 (UTC)"
	if got := FormatReceived(base); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	base.TLS = &TLSInfo{Version: "TLSv1.2", Cipher: "ECDHE-RSA-AES256-GCM-SHA384", UsedBits: 256, CipherBits: 256}
	base.AuthSender = ""
	want = "Received: from mail.example (mail.example [IPv6:2001:db8::1])\n" +
		"\t(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits))\n" +
		"\t(No client certificate requested)\n" +
		"\tby mx.example.org (moat) with ESMTPSA id ABC;\n" +
		"\tSat, 17 Oct 2026 13:57:37 +0000 (UTC)"
	if got := FormatReceived(base); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// lineSource streams a message of n body lines without holding it.
type lineSource struct {
	head []byte
	line []byte
	left int
	buf  []byte
}

func (s *lineSource) Read(p []byte) (int, error) {
	for len(s.buf) < len(p) && (s.left > 0 || s.head != nil) {
		if s.head != nil {
			s.buf = append(s.buf, s.head...)
			s.head = nil
			continue
		}
		s.buf = append(s.buf, s.line...)
		s.left--
	}
	if len(s.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// countWriter counts what the filter writes and samples the live heap
// every 4 MB, so the test sees the peak during the run, not only after it.
type countWriter struct {
	n, next int64
	peak    uint64
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.n >= c.next {
		c.next = c.n + 4<<20
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		c.peak = max(c.peak, m.HeapAlloc)
	}
	return len(p), nil
}

// TestLargeBodyBoundedMemory streams a 50 MB body, with a line far longer
// than line_length_limit in it, through body checks and checks that the
// heap does not grow with it.
func TestLargeBodyBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 50 MB")
	}
	line := []byte(strings.Repeat("0123456789", 10) + "\r\n") // 102 bytes
	n := 50 << 20 / len(line)
	src := &lineSource{head: []byte("Subject: big\r\n\r\n" + strings.Repeat("z", 1<<20) + "\r\n"), line: line, left: n}
	var cw countWriter
	f := New(&cw, Options{Checks: bodyChecks(t, "/spam/ REJECT\n"), BodyChecksSizeLimit: 1 << 40})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := io.CopyBuffer(f, src, make([]byte, 32<<10)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if want := int64(len("Subject: big\r\n\r\n") + 1<<20 + 2 + n*len(line)); cw.n != want {
		t.Errorf("wrote %d bytes, want %d", cw.n, want)
	}
	if f.Result().Reject != "" {
		t.Error("rejected")
	}
	// Live heap after the run: the filter's buffers are small.
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 4<<20 {
		t.Errorf("heap grew by %d bytes", grow)
	}
	if grow := int64(cw.peak) - int64(before.HeapAlloc); grow > 4<<20 {
		t.Errorf("live heap grew by %d bytes during the run", grow)
	}
	if p := f.p; cap(p.line) > 2*p.lim.HeaderSize || cap(p.hdr) > 2*p.lim.HeaderSize {
		t.Errorf("parser buffers grew: line %d hdr %d", cap(p.line), cap(p.hdr))
	}
}

func TestHopcount(t *testing.T) {
	msg := strings.Repeat("Received: from x\r\n", 3) + "Delivered-To: a@b\r\n\r\nbody\r\n"
	if _, res := run(t, Options{HopcountLimit: 4}, msg); res.TooManyHops {
		t.Error("4 hops exceed a limit of 4")
	}
	// IGNOREd Received: headers still count.
	if _, res := run(t, Options{HopcountLimit: 3, Checks: hdrChecks(t, "/^Received:/ IGNORE\n")}, msg); !res.TooManyHops {
		t.Error("5 hops within a limit of 3")
	}
}

func TestLongFirstLineIsBody(t *testing.T) {
	// A message without headers whose first line exceeds
	// header_size_limit: nothing of it may be lost.
	msg := strings.Repeat("b", 300000) + "\r\nmore\r\n"
	out, res := run(t, Options{Limits: Limits{HeaderSize: 1000}}, msg)
	if out != msg {
		t.Errorf("body changed: %d bytes in, %d out", len(msg), len(out))
	}
	if res.MIMEErrors != 0 {
		t.Errorf("errors %v", res.MIMEErrors.Text())
	}
	// After headers, too.
	msg = "Subject: x\r\n" + msg
	if out, _ := run(t, Options{Limits: Limits{HeaderSize: 1000}}, msg); out != msg {
		t.Errorf("body changed: %d bytes in, %d out", len(msg), len(out))
	}
}

func TestEightBit(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want MIMEError
	}{
		{"Subject: caf\xc3\xa9\r\n\r\nplain\r\n", Err8BitHeader},
		{"Subject: x\r\n\r\ncaf\xc3\xa9\r\n", Err8BitBody},
		{"Subject: x\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n", 0},
		{"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xff\r\n--b\r\n\r\n\xff\r\n--b--\r\n", Err8BitBody},
	} {
		if _, res := run(t, Options{}, tc.msg); res.MIMEErrors != tc.want {
			t.Errorf("%q: errors %v, want %v", tc.msg, res.MIMEErrors.Text(), tc.want.Text())
		}
	}
}
