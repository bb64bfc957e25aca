package smtp

import (
	"errors"
	"testing"
)

func TestExtractAddress(t *testing.T) {
	cases := []struct {
		raw    string
		addr   string
		strict bool // accepted under strict_rfc821_envelopes
		ok     bool
	}{
		{"<wietse@porcupine.org>", "wietse@porcupine.org", true, true},
		{"<>", "", true, true},
		{"wietse@porcupine.org", "wietse@porcupine.org", false, true},
		{"<wietse @ porcupine.org>", "wietse@porcupine.org", true, true},
		{`<"wietse venema"@porcupine.org>`, "wietse venema@porcupine.org", true, true},
		{`"wietse venema"@porcupine.org`, "wietse venema@porcupine.org", false, true},
		{`wietse\ venema@porcupine.org`, "wietse venema@porcupine.org", false, true},
		{`<"wietse venema"@porcupine.org ("wietse ) venema")>`, "wietse venema@porcupine.org", false, true},
		{`<"wietse venema" <wietse@porcupine.org>>`, "wietse@porcupine.org", false, true},
		{"<@a,@b:user@d>", "user@d", true, true},
		{"<@a:user@d>", "user@d", true, true},
		{"<user@[192.0.2.1]>", "user@[192.0.2.1]", true, true},
		{"<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]", true, true},
		{"<postmaster>", "postmaster", true, true},
		{"<jöran@bücher.example>", "jöran@bücher.example", true, true},
		{"<a@b>,<c@d>", "", false, false},
		{"<a@b,c@d>", "", false, false},
		{"<@a,@b>", "", false, false},
		{"<a@b> trailing", "a@b", false, true},
		{")a@b>", "", false, false},
		{"<a)b@c>", "", false, false},
	}
	for _, c := range cases {
		addr, extra, ok := extractAddress(c.raw)
		if ok != c.ok || (ok && addr != c.addr) {
			t.Errorf("extractAddress(%q) = %q, %v; want %q, %v", c.raw, addr, ok, c.addr, c.ok)
		}
		strictOK := ok && !extra && c.raw[0] == '<'
		if c.ok && strictOK != c.strict {
			t.Errorf("extractAddress(%q): strict-acceptable %v, want %v", c.raw, strictOK, c.strict)
		}
	}
}

var allOpts = Options{SMTPUTF8: true, DSN: true, Auth: true, SizeLimit: 10240000}

func TestParseMail(t *testing.T) {
	m, err := ParseMail(Tokenize("MAIL FROM:<a@b> SIZE=100 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=QQ+2B1 AUTH=<>"), allOpts)
	if err != nil {
		t.Fatal(err)
	}
	want := Mail{From: Path{"a@b", "<a@b>"}, Size: 100, Body: "8BITMIME", SMTPUTF8: true, Ret: "HDRS", EnvID: "QQ+1", Auth: "<>", HasAuth: true}
	if m != want {
		t.Errorf("ParseMail = %+v, want %+v", m, want)
	}
	m, err = ParseMail(Tokenize("mail from: <>"), Options{})
	if err != nil || !m.From.Null() || m.Size != -1 {
		t.Errorf("null sender: %+v %v", m, err)
	}
	m, err = ParseMail(Tokenize("MAIL FROM:<x@y> AUTH=joe+40example.org"), allOpts)
	if err != nil || m.Auth != "joe@example.org" {
		t.Errorf("AUTH: %+v %v", m, err)
	}
}

// TestMailRcptReplies is the table of every refusal and its exact reply.
func TestMailRcptReplies(t *testing.T) {
	strict := allOpts
	strict.Strict = true
	cases := []struct {
		line string
		o    Options
		want string
	}{
		{"MAIL", allOpts, "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{"MAIL FROM:", allOpts, "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{"MAIL TO:<a@b>", allOpts, "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{"MAIL FROM:<a@b", allOpts, "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<a@b>,<c@d>", allOpts, "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:a@b", strict, "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<a@b (comment)>", strict, "501 5.1.7 Bad sender address syntax"},
		{`MAIL FROM:<"x" <a@b>>`, strict, "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<a@b> SIZE=12x", allOpts, "501 5.5.4 Bad message size syntax"},
		{"MAIL FROM:<a@b> SIZE=", allOpts, "501 5.5.4 Bad message size syntax"},
		{"MAIL FROM:<a@b> SIZE=99999999999999999999", allOpts, "552 5.3.4 Message size exceeds file system imposed limit"},
		{"MAIL FROM:<a@b> SIZE=10240001", allOpts, "552 5.3.4 Message size exceeds fixed limit"},
		{"MAIL FROM:<a@b> BODY=BINARYMIME", allOpts, "555 5.5.4 Unsupported option: BODY=BINARYMIME"},
		{"MAIL FROM:<a@b> BODY=9BIT", allOpts, "555 5.5.4 Unsupported option: BODY=9BIT"},
		{"MAIL FROM:<a@b> FOO=BAR", allOpts, "555 5.5.4 Unsupported option: FOO=BAR"},
		{"MAIL FROM:<a@b> SMTPUTF8", Options{}, "555 5.5.4 Unsupported option: SMTPUTF8"},
		{"MAIL FROM:<a@b> RET=FULL", Options{}, "555 5.5.4 Unsupported option: RET=FULL"},
		{"MAIL FROM:<a@b> AUTH=<>", Options{}, "555 5.5.4 Unsupported option: AUTH=<>"},
		{"MAIL FROM:<a@b> RET=ALL", allOpts, "501 5.5.4 Bad RET parameter syntax"},
		{"MAIL FROM:<a@b> RET=FULL RET=HDRS", allOpts, "501 5.5.4 Bad RET parameter syntax"},
		{"MAIL FROM:<a@b> ENVID=a+2", allOpts, "501 5.5.4 Bad ENVID parameter syntax"},
		{"MAIL FROM:<a@b> ENVID=a+0A", allOpts, "501 5.5.4 Bad ENVID parameter syntax"},
		{"MAIL FROM:<a@b> ENVID=", allOpts, "501 5.5.4 Bad ENVID parameter syntax"},
		{"MAIL FROM:<a@b> AUTH=a+zz", allOpts, "501 5.5.4 Bad AUTH parameter syntax"},
		{"RCPT", allOpts, "501 5.5.4 Syntax: RCPT TO:<address>"},
		{"RCPT FROM:<a@b>", allOpts, "501 5.5.4 Syntax: RCPT TO:<address>"},
		{"RCPT TO:<>", allOpts, "501 5.1.3 Bad recipient address syntax"},
		{"RCPT TO:<a@b", allOpts, "501 5.1.3 Bad recipient address syntax"},
		{"RCPT TO:a@b", strict, "501 5.1.3 Bad recipient address syntax"},
		{"RCPT TO:<a@b> NOTIFY=NEVER,DELAY", allOpts, "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
		{"RCPT TO:<a@b> NOTIFY=SOMETIMES", allOpts, "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
		{"RCPT TO:<a@b> NOTIFY=", allOpts, "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
		{"RCPT TO:<a@b> NOTIFY=DELAY NOTIFY=DELAY", allOpts, "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
		{"RCPT TO:<a@b> ORCPT=rfc822", allOpts, "501 5.5.4 Error: Bad ORCPT parameter syntax"},
		{"RCPT TO:<a@b> ORCPT=;a@b", allOpts, "501 5.5.4 Error: Bad ORCPT parameter syntax"},
		{"RCPT TO:<a@b> ORCPT=rfc822;a+", allOpts, "501 5.5.4 Error: Bad ORCPT parameter syntax"},
		{"RCPT TO:<a@b> NOTIFY=NEVER", Options{}, "555 5.5.4 Unsupported option: NOTIFY=NEVER"},
		{"RCPT TO:<a@b> SIZE=1", allOpts, "555 5.5.4 Unsupported option: SIZE=1"},
	}
	for _, c := range cases {
		toks := Tokenize(c.line)
		var err error
		if toks[0].Value == "MAIL" {
			_, err = ParseMail(toks, c.o)
		} else {
			_, err = ParseRcpt(toks, c.o)
		}
		r, ok := ReplyOf(err)
		if !ok || r.String() != c.want {
			t.Errorf("%q: got %v (%v), want %q", c.line, r, err, c.want)
		}
	}
}

func TestParseRcpt(t *testing.T) {
	r, err := ParseRcpt(Tokenize("RCPT TO:<@relay:Joe@Example.ORG> NOTIFY=success,Failure ORCPT=rfc822;joe+2Bx@example.org"), allOpts)
	if err != nil {
		t.Fatal(err)
	}
	if r.To.Addr != "Joe@Example.ORG" || r.To.Local() != "Joe" || r.To.Domain() != "Example.ORG" || r.To.Raw != "<@relay:Joe@Example.ORG>" {
		t.Errorf("path %+v", r.To)
	}
	if r.Notify != NotifySuccess|NotifyFailure || r.Notify.String() != "SUCCESS,FAILURE" {
		t.Errorf("notify %v", r.Notify)
	}
	if !r.HasORcpt || r.ORcptType != "rfc822" || r.ORcpt != "joe+x@example.org" {
		t.Errorf("orcpt %+v", r)
	}
	r, err = ParseRcpt(Tokenize(`RCPT TO:<j@x> ORCPT=utf-8;j\x{00F6}r@x`), allOpts)
	if err != nil || r.ORcpt != "jör@x" {
		t.Errorf("utf-8 orcpt %+v %v", r, err)
	}
	if _, err := ParseRcpt(Tokenize("RCPT TO:<a@b> BOGUS"), allOpts); !errors.Is(err, ErrSyntax) {
		t.Errorf("err %v", err)
	}
}

func TestXtext(t *testing.T) {
	for _, s := range []string{"", "plain", "a+b=c", "sp ace\x00\xff", "ü"} {
		enc := XtextEncode(s)
		dec, err := XtextDecode(enc)
		if err != nil || dec != s {
			t.Errorf("round trip %q -> %q -> %q %v", s, enc, dec, err)
		}
	}
	if XtextEncode("a+b=c d") != "a+2Bb+3Dc+20d" {
		t.Errorf("encode %q", XtextEncode("a+b=c d"))
	}
	for _, bad := range []string{"a=b", "a b", "+", "+4", "+GG", "+-1"} {
		if _, err := XtextDecode(bad); err == nil {
			t.Errorf("XtextDecode(%q) accepted", bad)
		}
	}
	for _, bad := range []string{`\x{}`, `\x{110000}`, `\x{D800}`, `\x41`, "a b"} {
		if _, err := UTF8XtextDecode(bad); err == nil {
			t.Errorf("UTF8XtextDecode(%q) accepted", bad)
		}
	}
}

func TestPathQuoted(t *testing.T) {
	for addr, want := range map[string]string{
		"a@b":                         "a@b",
		"wietse venema@porcupine.org": `"wietse venema"@porcupine.org`,
		`a"b@c`:                       `"a\"b"@c`,
		"postmaster":                  "postmaster",
		"":                            "",
		"a..b@c":                      `"a..b"@c`,
	} {
		if got := (Path{Addr: addr}).Quoted(); got != want {
			t.Errorf("Quoted(%q) = %q, want %q", addr, got, want)
		}
	}
	if (Path{Addr: "jö@x"}).ASCII() || !(Path{Addr: "j@x"}).ASCII() {
		t.Error("ASCII")
	}
}
