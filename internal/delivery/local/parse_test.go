package local

import (
	"bufio"
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"moat/internal/config"
	"moat/internal/delivery/asuser"
)

func TestSplitRecipient(t *testing.T) {
	for _, tc := range []struct {
		addr, delims                    string
		local, domain, user, ext, delim string
	}{
		{"Joe@Example.COM", "+", "joe", "example.com", "joe", "", ""},
		{"joe+Foo@x", "+", "joe+foo", "x", "joe", "foo", "+"},
		{"joe-a+b@x", "+-", "joe-a+b", "x", "joe", "a+b", "-"},
		{"owner-list@x", "-", "owner-list", "x", "owner-list", "", ""},
		{"list-request@x", "-", "list-request", "x", "list-request", "", ""},
		{"+foo@x", "+", "+foo", "x", "+foo", "", ""},
		{"joe+a/b@x", "+", "joe+a/b", "x", "joe+a/b", "", ""},
		{"joe", "+", "joe", "", "joe", "", ""},
		{"a@b@c", "", "a@b", "c", "a@b", "", ""},
	} {
		l, d, u, e, dl := splitRecipient(tc.addr, tc.delims, true)
		if l != tc.local || d != tc.domain || u != tc.user || e != tc.ext || dl != tc.delim {
			t.Errorf("splitRecipient(%q, %q) = %q %q %q %q %q", tc.addr, tc.delims, l, d, u, e, dl)
		}
	}
}

func TestDeliveredTo(t *testing.T) {
	msg := "Received: from x\r\n\tby y\r\nDelivered-To: A@Example.com\r\ndelivered-to :\r\n  b@example.com\r\nSubject: x\r\n\r\nDelivered-To: body@example.com\r\n"
	got, err := deliveredTo(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !got["a@example.com"] || !got["b@example.com"] || got["body@example.com"] || len(got) != 2 {
		t.Errorf("deliveredTo = %v", got)
	}
	// A header section without a body, and a line longer than the buffer.
	long := "X-Long: " + strings.Repeat("x", 100000) + "\r\nDelivered-To: c@x\r\n"
	got, err = deliveredTo(strings.NewReader(long))
	if err != nil || !got["c@x"] {
		t.Errorf("deliveredTo(long) = %v, %v", got, err)
	}
}

func TestExpandLocal(t *testing.T) {
	m := macros{user: "joe", home: "/home/joe", shell: "/bin/sh", recipient: "joe+x@example.com",
		extension: "x", domain: "example.com", local: "joe+x", delimiter: "+"}
	filter := "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for _, tc := range []struct{ in, want string }{
		{"$home/.forward${recipient_delimiter}${extension}", "/home/joe/.forward+x"},
		{"$home/.forward", "/home/joe/.forward"},
		{"/var/forward/$user", "/var/forward/joe"},
		{"${extension?/ext/$extension}", "/ext/x"},
		{"${nothing?yes}${nothing:no}", "no"},
		{"$(user)-$domain-$local-$recipient-$shell", "joe-example.com-joe+x-joe+x@example.com-/bin/sh"},
	} {
		got, st := expandLocal(tc.in, m, filter)
		if got != tc.want || st&config.StatError != 0 {
			t.Errorf("expandLocal(%q) = %q (%d), want %q", tc.in, got, st, tc.want)
		}
	}
	// Without an extension, the conditional part disappears.
	m.extension, m.delimiter = "", "+"
	if got, _ := expandLocal("$home/.forward${extension?$recipient_delimiter}${extension}", m, filter); got != "/home/joe/.forward" {
		t.Errorf("no extension: %q", got)
	}
	// Shell syntax in a value becomes '_'.
	m.extension = "a;rm -rf `x`"
	if got, _ := expandLocal("$extension", m, filter); got != "a_rm_-rf__x_" {
		t.Errorf("filtered: %q", got)
	}
	if _, st := checkTemplate("${user"); st&config.StatError == 0 {
		t.Errorf("unterminated ${ not reported")
	}
}

func TestParseForward(t *testing.T) {
	data := "# comment\nJoe Doe <joe@example.com>, \"|/usr/bin/procmail -a x\",\n  /var/mail/joe.copy\n\n:include:/etc/list , \\me\r\n"
	got := parseForward([]byte(data), 2048)
	want := []string{"Joe Doe <joe@example.com>", `"|/usr/bin/procmail -a x"`, "/var/mail/joe.copy", ":include:/etc/list", "me"}
	if !slices.Equal(got, want) {
		t.Errorf("parseForward = %q, want %q", got, want)
	}
	var in []string
	for _, g := range got {
		in = append(in, internalize(g))
	}
	want = []string{"joe@example.com", "|/usr/bin/procmail -a x", "/var/mail/joe.copy", ":include:/etc/list", "me"}
	if !slices.Equal(in, want) {
		t.Errorf("internalized = %q, want %q", in, want)
	}
}

func TestInternalize(t *testing.T) {
	for in, want := range map[string]string{
		`"foo bar"@example.com`:          "foo bar@example.com",
		`a@b (comment (nested))`:         "a@b",
		`Name <x@y>`:                     "x@y",
		` "|cmd \"q\""`:                  `|cmd "q"`,
		`|/bin/cmd arg`:                  "|/bin/cmd arg",
		`/dir/file`:                      "/dir/file",
		`:INCLUDE:/x`:                    ":INCLUDE:/x",
		`"unterminated`:                  "unterminated",
		`<unterminated`:                  "unterminated",
		`user`:                           "user",
		`"a\\b"@c`:                       `a\b@c`,
		`(only a comment)`:               "",
		`a (c) @ (d) example.com (e)`:    "a@example.com",
		`"quoted with \"escape\""@x.org`: `quoted with "escape"@x.org`,
	} {
		if got := internalize(in); got != want {
			t.Errorf("internalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCommandOutcome(t *testing.T) {
	for _, tc := range []struct {
		res         asuser.CommandResult
		dsn, reason string
		failed      bool
	}{
		{asuser.CommandResult{Status: 0, Output: "ignored"}, "", "", false},
		{asuser.CommandResult{Status: 75}, "4.3.0", "temporary failure", true},
		{asuser.CommandResult{Status: 67, Output: "no such user\n"}, "5.1.1", "user unknown. Command output: no such user", true},
		{asuser.CommandResult{Status: 1}, "5.3.0", `Command died with status 1: "cmd"`, true},
		{asuser.CommandResult{Status: 1, Output: "4.2.2 over quota\n"}, "4.2.2", "over quota", true},
		{asuser.CommandResult{Status: 1, Output: "2.0.0 fine"}, "5.3.0", `Command died with status 1: "cmd". Command output: 2.0.0 fine`, true},
		{asuser.CommandResult{Signal: 9}, "4.3.0", `Command died with signal 9: "cmd"`, true},
		{asuser.CommandResult{TimedOut: true, Signal: 9}, "4.3.0", `Command time limit exceeded: "cmd"`, true},
		{asuser.CommandResult{Status: 78, Output: "a\x01b\n\nc"}, "5.3.5", "local configuration error. Command output: a?b c", true},
	} {
		dsn, reason, failed := commandOutcome(tc.res, "cmd")
		if dsn != tc.dsn || reason != tc.reason || failed != tc.failed {
			t.Errorf("commandOutcome(%+v) = %q %q %v, want %q %q %v", tc.res, dsn, reason, failed, tc.dsn, tc.reason, tc.failed)
		}
	}
}

func TestLFReader(t *testing.T) {
	for in, want := range map[string]string{
		"a\r\nb\r\n":    "a\nb\n",
		"a\rb\r":        "a\rb\r",
		"\r\r\n\r":      "\r\n\r",
		"":              "",
		"no newline":    "no newline",
		"x\r\n\r\n\r\n": "x\n\n\n",
	} {
		for _, size := range []int{1, 2, 3, 64} {
			r := &lfReader{r: newBufReader(in)}
			var out []byte
			buf := make([]byte, size)
			for i := 0; i < 1000; i++ {
				n, err := r.Read(buf)
				out = append(out, buf[:n]...)
				if err != nil {
					break
				}
			}
			if string(out) != want {
				t.Errorf("lfReader(%q, %d) = %q, want %q", in, size, out, want)
			}
		}
	}
}

// FuzzParseForward checks that any .forward file parses without panic
// into targets that are never empty, and that internalizing them keeps
// them valid UTF-8 when the input was.
func FuzzParseForward(f *testing.F) {
	for _, s := range []string{
		"joe@example.com\n",
		"# c\n\"|/usr/bin/procmail\"\n  /tmp/file, :include:/etc/x\n",
		"\\joe, Joe <j@x>, \"q\\\"x\"@y (c (d))\n",
		"\n\n \t\n#\n",
		"a,,b,\"unterminated\n(",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tg := range parseForward(data, 2048) {
			if strings.TrimSpace(tg) == "" {
				t.Fatalf("empty target from %q", data)
			}
			in := internalize(tg)
			if utf8.Valid(data) && !utf8.ValidString(in) {
				t.Fatalf("internalize(%q) = %q: invalid UTF-8", tg, in)
			}
		}
	})
}

// FuzzExpandForwardPath checks the forward_path expander on any template
// and any recipient: no panic, and no value character outside the
// filter (a recipient address must not put '/' .. or shell syntax into
// a path it did not come with).
func FuzzExpandForwardPath(f *testing.F) {
	f.Add("$home/.forward${recipient_delimiter}${extension}, $home/.forward", "joe", "ext")
	f.Add("${extension?{/x/$extension}:{/y}}", "joe", "")
	f.Add("$(user)${local:z}$", "a;b", "../..")
	f.Add("${{$user} == {joe}?yes:no}", "joe", "x")
	f.Fuzz(func(t *testing.T, tmpl, user, ext string) {
		filter := "abcdefghijklmnopqrstuvwxyz+"
		m := macros{user: user, extension: ext, home: "/h", local: user + "+" + ext, delimiter: "+"}
		out, _ := expandLocal(tmpl, m, filter)
		// Every byte of the output came from the template or is a
		// filtered value byte.
		for i := 0; i < len(out); i++ {
			c := out[i]
			if strings.IndexByte(filter+"_/h", c) < 0 && strings.IndexByte(tmpl, c) < 0 {
				t.Fatalf("expandLocal(%q, %q, %q) = %q: byte %q from no source", tmpl, user, ext, out, c)
			}
		}
	})
}

func newBufReader(s string) *bufio.Reader { return bufio.NewReaderSize(strings.NewReader(s), 16) }

// FuzzDeliveredTo checks the header scan used for loop detection: no
// panic on any content, and a Delivered-To: put in front of any content
// is always found.
func FuzzDeliveredTo(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"))
	f.Add([]byte("Delivered-To: a@b\r\n\tfolded\r\nX: y\r\n\r\n"))
	f.Add([]byte("no colon\r\n \r\n\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := deliveredTo(bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		seen, err := deliveredTo(io.MultiReader(strings.NewReader("Delivered-To: Loop@Example.com\r\n\r\n"), bytes.NewReader(data)))
		if err != nil || !seen["loop@example.com"] {
			t.Fatalf("prepended Delivered-To not found: %v %v", seen, err)
		}
	})
}

func TestParseForwardChunks(t *testing.T) {
	// A logical line longer than line_length_limit is cut into chunks,
	// never inside a UTF-8 character.
	line := strings.Repeat("é", 30) + "@x.org, " + strings.Repeat("b", 10) + "@y.org"
	got := parseForward([]byte(line), 25)
	for _, g := range got {
		if !utf8.ValidString(g) {
			t.Errorf("chunk %q is not valid UTF-8", g)
		}
	}
	if len(got) < 3 {
		t.Errorf("parseForward = %q, want several chunks", got)
	}
}
