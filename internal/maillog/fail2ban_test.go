package maillog

import (
	"bufio"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// f2bRegexes reads testdata/fail2ban-postfix.txt: fail2ban's own postfix
// filter expressions, quoted verbatim.
func f2bRegexes(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "fail2ban-postfix.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("bad testdata line %q", line)
		}
		m[k] = v
	}
	return m
}

// f2bCompile expands fail2ban's %(name)s references and <HOST>, and
// drops the two Python lookarounds RE2 lacks; f2bMatch checks them in Go.
func f2bCompile(t *testing.T, m map[string]string, expr string) *regexp.Regexp {
	t.Helper()
	for k, v := range m {
		expr = strings.ReplaceAll(expr, "%("+k+")s", v)
	}
	expr = strings.ReplaceAll(expr, "<HOST>", `(?P<host>[^\]\s]+)`)
	expr = strings.ReplaceAll(expr, "after(?! DATA) [A-Z]+", "after [A-Z]+")
	expr = strings.ReplaceAll(expr, `disconnect(?= from \S+(?: \S+=\d+)* auth=0/(?:[1-9]|\d\d+))`,
		"disconnect")
	if strings.Contains(expr, "(?!") || strings.Contains(expr, "(?=") {
		t.Fatalf("untranslated lookaround in %s", expr)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		t.Fatalf("compile %s: %v", expr, err)
	}
	return re
}

// f2bMatch plays fail2ban: strip the date, match the prefix line and the
// mode's mdpr (prefregex), then each mdre against the rest (failregex),
// returning the host found or "".
func f2bMatch(t *testing.T, m map[string]string, mode, line string) string {
	t.Helper()
	date := regexp.MustCompile(`^[A-Z][a-z]{2} [ 0-3]\d \d\d:\d\d:\d\d `)
	rest := date.ReplaceAllString(line, "")
	if rest == line {
		t.Fatalf("no date on %q", line)
	}
	// lt_short __prefix_line with the daemon made mandatory, so a wrong
	// tag fails here instead of being skipped as optional.
	prefix := `^\s*(?:\S+\s+)?` + m["_daemon"] + `(?:\[\d+\])?:?\s+`
	var mdpr string
	var mdre []string
	switch mode {
	case "normal":
		mdpr, mdre = m["mdpr-normal"], []string{m["mdre-normal"], m["mdre-normal2"]}
	case "rbl":
		mdpr, mdre = m["mdpr-normal"], []string{m["mdre-rbl"]}
	case "ddos":
		mdpr, mdre = m["mdpr-ddos"], []string{m["mdre-ddos"]}
	case "errors":
		mdpr, mdre = m["mdpr-errors"], []string{m["mdre-errors"]}
	case "auth":
		mdpr, mdre = "warning:", []string{`^[^[]*\[<HOST>\]%(_port)s: SASL ((?i)LOGIN|PLAIN|(?:CRAM|DIGEST)-MD5) authentication failed:`}
	}
	pre := f2bCompile(t, m, prefix+"(?P<pr>"+mdpr+`) (?P<content>.+)$`)
	sm := pre.FindStringSubmatch(rest)
	if sm == nil {
		return ""
	}
	pr := sm[pre.SubexpIndex("pr")]
	if strings.HasPrefix(pr, "lost connection after DATA") { // (?! DATA)
		return ""
	}
	content := sm[pre.SubexpIndex("content")]
	ahead := regexp.MustCompile(`^ from \S+(?: \S+=\d+)* auth=0/(?:[1-9]|\d\d+)`) // (?= ...)
	if pr == "disconnect" && !ahead.MatchString(" "+content) {
		return ""
	}
	for _, r := range mdre {
		re := f2bCompile(t, m, r)
		if cm := re.FindStringSubmatch(content); cm != nil {
			return cm[re.SubexpIndex("host")]
		}
	}
	return ""
}

// Lines written by moat's Logger to a maillog_file, checked against
// fail2ban's stock postfix filter: the bans admins rely on must keep
// working, and ordinary traffic must not be banned.
func TestFail2banPostfixFilter(t *testing.T) {
	m := f2bRegexes(t)
	var buf strings.Builder
	l := New(Options{Sink: NewWriterSink(&buf, "mx"), Daemon: "smtpd", PID: 812,
		Now: func() time.Time { return time.Date(2026, 7, 3, 11, 0, 40, 0, time.UTC) }})
	sub := l.WithName("postfix/submission")
	v4 := Client{Name: "", Addr: netip.MustParseAddr("192.0.2.1")}
	v6 := Client{Name: "bad.example", Addr: netip.MustParseAddr("2001:db8::66"), Port: 40000, LogPort: true}
	env := Envelope{Sender: "a@example.org", HasSender: true, Recipient: "u@example.com", HasRecipient: true, Proto: "ESMTP", Helo: "x"}
	type want struct{ mode, host string }
	cases := []struct {
		text string
		warn bool
		lg   *Logger
		want []want // modes that must ban (host); every other mode must not
	}{
		{text: Reject("", "RCPT", v4, "554 5.7.1 <u@example.com>: Relay access denied", env),
			want: []want{{"normal", "192.0.2.1"}}},
		{text: Reject("", "RCPT", v6, "450 4.7.1 <x>: Helo command rejected: Host not found", env),
			want: []want{{"normal", "2001:db8::66"}}},
		{text: Reject("", "RCPT", v4, "550 5.1.1 <u@example.com>: Recipient address rejected: User unknown in local recipient table", env),
			want: []want{{"normal", "192.0.2.1"}}},
		{text: Reject("", "RCPT", v4, "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.example", env),
			want: []want{{"normal", "192.0.2.1"}, {"rbl", "192.0.2.1"}}},
		// fail2ban's _pref is four capitals: a CONNECT-stage reject is not
		// banned (Postfix delays rejects to RCPT by default anyway).
		{text: Reject("", StateConnect, v4, "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.example", Envelope{Proto: "SMTP"})},
		{text: After(TooManyErrors, "RCPT", v4),
			want: []want{{"normal", "192.0.2.1"}, {"errors", "192.0.2.1"}}},
		{text: After(LostConnection, "AUTH", v4), want: []want{{"ddos", "192.0.2.1"}}},
		{text: After(LostConnection, StateConnect, v6), want: []want{{"ddos", "2001:db8::66"}}},
		{text: AfterBytes(LostConnection, "DATA", 0, v4)},
		{text: disconnectText(v4, "EHLO", true, "AUTH", false, "QUIT", true), want: []want{{"ddos", "192.0.2.1"}}},
		{text: disconnectText(v4, "EHLO", true, "MAIL", true, "RCPT", true, "DATA", true, "QUIT", true)},
		{text: disconnectText(v4, "EHLO", true, "AUTH", true, "QUIT", true)},
		{text: Connect(v4)},
		{text: ImproperPipelining("EHLO", v4, []byte("MAIL FROM:<a@b>\r\n")), want: []want{{"normal", "192.0.2.1"}}},
		{text: ClientLine("4Nx3Fz1QZKz9vD5", v4, ClientInfo{})},
		{text: SASLAuthFailed(v4, "LOGIN", "UGFzc3dvcmQ6"), warn: true, lg: sub, want: []want{{"auth", "192.0.2.1"}}},
		{text: SASLAuthFailed(v6, "PLAIN", "authentication failure"), warn: true, want: []want{{"auth", "2001:db8::66"}}},
	}
	for _, c := range cases {
		lg := c.lg
		if lg == nil {
			lg = l
		}
		if c.warn {
			lg.Warning("%s", c.text)
		} else {
			lg.Info("%s", c.text)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("%d lines for %d cases", len(lines), len(cases))
	}
	for i, c := range cases {
		for _, mode := range []string{"normal", "rbl", "ddos", "errors", "auth"} {
			wantHost := ""
			for _, w := range c.want {
				if w.mode == mode {
					wantHost = w.host
				}
			}
			if got := f2bMatch(t, m, mode, lines[i]); got != wantHost {
				t.Errorf("mode %s: %q\n  banned host %q, want %q", mode, lines[i], got, wantHost)
			}
		}
	}
}

// disconnectText builds a disconnect record from (verb, ok) pairs.
func disconnectText(c Client, pairs ...any) string {
	var s Commands
	for i := 0; i < len(pairs); i += 2 {
		s.Count(pairs[i].(string), pairs[i+1].(bool))
	}
	return Disconnect(c, &s)
}
