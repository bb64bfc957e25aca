package smtpdcheck

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  \t ", nil},
		{"helo foo", []string{"helo", "foo"}},
		{"client_restrictions permit_mynetworks,reject", []string{"client_restrictions", "permit_mynetworks,reject"}},
		{"x inline:{ a=b, c=d } y", []string{"x", "inline:{ a=b, c=d }", "y"}},
		{"x {a {b c} d}e f", []string{"x", "{a {b c} d}e", "f"}},
		{"x } y", []string{"x", "}", "y"}},
		{"x { unclosed y", []string{"x", "{ unclosed y"}},
		{"smtpd_null_access_lookup_key <> ", []string{"smtpd_null_access_lookup_key", "<>"}},
	} {
		if got := Split(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Split(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Command
	}{
		{"# comment", Command{Kind: Comment}},
		{"#! ../bin/postmap x", Command{Kind: Comment}},
		{"!ls", Command{Kind: Shell, Value: "ls"}},
		{"", Command{Kind: Empty}},
		{"client foo 1.2.3.4", Command{Kind: Client, Args: []string{"client", "foo", "1.2.3.4"}, Name: "foo", Value: "1.2.3.4", Status: 2}},
		{"client unknown 1.2.3.4", Command{Kind: Client, Args: []string{"client", "unknown", "1.2.3.4"}, Name: "unknown", Value: "1.2.3.4", Status: 4}},
		{"CLIENT foo 1.2.3.4 6", Command{Kind: Client, Args: []string{"CLIENT", "foo", "1.2.3.4", "6"}, Name: "foo", Value: "1.2.3.4", Status: 6}},
		{"client foo 1.2.3.4 x", Command{Kind: Client, Args: []string{"client", "foo", "1.2.3.4", "x"}, Name: "foo", Value: "1.2.3.4", Status: 0}},
		{"helo foo.", Command{Kind: Helo, Args: []string{"helo", "foo."}, Name: "foo.", Value: "foo."}},
		{"mail <>", Command{Kind: Mail, Args: []string{"mail", "<>"}, Name: "", Value: "<>"}},
		{"mail <a@b>", Command{Kind: Mail, Args: []string{"mail", "<a@b>"}, Name: "a@b", Value: "<a@b>"}},
		{"rcpt a@b", Command{Kind: Rcpt, Args: []string{"rcpt", "a@b"}, Name: "a@b", Value: "a@b"}},
		{"etrn example.com", Command{Kind: Etrn, Args: []string{"etrn", "example.com"}, Name: "example.com", Value: "example.com"}},
		{"fingerprint ab:cd", Command{Kind: Fingerprint, Args: []string{"fingerprint", "ab:cd"}, Name: "ab:cd", Value: "ab:cd"}},
		{"flush_dnsxl_cache", Command{Kind: FlushDNS, Args: []string{"flush_dnsxl_cache"}}},
		{"rewrite", Command{Kind: Rewrite, Args: []string{"rewrite"}}},
		{"sender_restrictions hash:x", Command{Kind: Restrictions, Args: []string{"sender_restrictions", "hash:x"}, Name: "smtpd_sender_restrictions", Value: "hash:x"}},
		{"restriction_class cls,permit,reject", Command{Kind: Class, Args: []string{"restriction_class", "cls,permit,reject"}, Name: "cls", Value: "permit,reject"}},
		{"restriction_class ,x", Command{Kind: Bad, Args: []string{"restriction_class", ",x"}, Name: "", Value: "x"}},
		{"mynetworks 127.0.0.0/8", Command{Kind: Param, Args: []string{"mynetworks", "127.0.0.0/8"}, Name: "mynetworks", Value: "127.0.0.0/8"}},
		{"helo", Command{Kind: Bad, Args: []string{"helo"}}},
		{"mail a b c", Command{Kind: Bad, Args: []string{"mail", "a", "b", "c"}}},
		{"a b c d e", Command{Kind: Bad, Args: []string{"a", "b", "c", "d", "e"}}},
	} {
		if got := Parse(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

// TestRunnerBasics drives the Runner with restrictions that need neither
// tables nor DNS. With smtpd_delay_reject the HELO list still runs at HELO
// (smtpd_check's main() calls smtpd_check_helo() itself) and again at RCPT.
func TestRunnerBasics(t *testing.T) {
	script := strings.Join([]string{
		"# a comment",
		"",
		"smtpd_delay_reject 0",
		"no_such_parameter 1",
		"mynetworks 127.0.0.0/8",
		"recipient_restrictions permit_mynetworks,reject_unauth_destination",
		"rcpt user@example.net",
		"client foo 192.0.2.1",
		"helo foo.example",
		"rcpt user@example.net",
		"mail <>",
		"rcpt user@example.net",
		"helo_restrictions reject",
		"helo bar.example",
		"smtpd_delay_reject 1",
		"helo baz.example",
		"rcpt user@example.net",
		"!echo hi",
	}, "\n")
	var out bytes.Buffer
	r := New(Options{Out: &out, Echo: true})
	if err := r.Run(context.Background(), strings.NewReader(script)); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		">>> # a comment",
		">>> ",
		">>> smtpd_delay_reject 0",
		"OK",
		">>> no_such_parameter 1",
		"bad command",
		">>> mynetworks 127.0.0.0/8",
		"OK",
		">>> recipient_restrictions permit_mynetworks,reject_unauth_destination",
		"OK",
		">>> rcpt user@example.net",
		"OK",
		">>> client foo 192.0.2.1",
		"OK",
		">>> helo foo.example",
		"OK",
		">>> rcpt user@example.net",
		"./smtpd_check: <queue id>: reject: RCPT from foo[192.0.2.1]: 554 5.7.1 <user@example.net>: Relay access denied; to=<user@example.net> proto=SMTP helo=<foo.example>",
		"554 5.7.1 <user@example.net>: Relay access denied",
		">>> mail <>",
		"OK",
		">>> rcpt user@example.net",
		"./smtpd_check: <queue id>: reject: RCPT from foo[192.0.2.1]: 554 5.7.1 <user@example.net>: Relay access denied; from=<> to=<user@example.net> proto=SMTP helo=<foo.example>",
		"554 5.7.1 <user@example.net>: Relay access denied",
		">>> helo_restrictions reject",
		"OK",
		">>> helo bar.example",
		"./smtpd_check: <queue id>: reject: HELO from foo[192.0.2.1]: 554 5.7.1 <bar.example>: Helo command rejected: Access denied; from=<> proto=SMTP helo=<bar.example>",
		"554 5.7.1 <bar.example>: Helo command rejected: Access denied",
		">>> smtpd_delay_reject 1",
		"OK",
		">>> helo baz.example",
		"./smtpd_check: <queue id>: reject: HELO from foo[192.0.2.1]: 554 5.7.1 <baz.example>: Helo command rejected: Access denied; from=<> proto=SMTP helo=<baz.example>",
		"554 5.7.1 <baz.example>: Helo command rejected: Access denied",
		">>> rcpt user@example.net",
		"./smtpd_check: <queue id>: reject: RCPT from foo[192.0.2.1]: 554 5.7.1 <baz.example>: Helo command rejected: Access denied; from=<> to=<user@example.net> proto=SMTP helo=<baz.example>",
		"554 5.7.1 <baz.example>: Helo command rejected: Access denied",
		">>> !echo hi",
		"bad command: smtpd-check does not run shell commands",
		"",
	}, "\n")
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

// TestRunnerClassesAndEtrn: restriction_class lines define classes an
// access table can name, redefining one rebuilds the lists, and etrn runs
// smtpd_etrn_restrictions.
func TestRunnerClassesAndEtrn(t *testing.T) {
	script := strings.Join([]string{
		"smtpd_delay_reject 0",
		"restriction_class myclass,reject",
		"sender_restrictions check_sender_access,inline:{a@b=myclass}",
		"mail a@b",
		"mail c@d",
		"restriction_class myclass,permit",
		"mail a@b",
		"etrn_restrictions reject",
		"etrn example.com",
	}, "\n")
	var out bytes.Buffer
	r := New(Options{Out: &out})
	if err := r.Run(context.Background(), strings.NewReader(script)); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"OK", "OK", "OK",
		"./smtpd_check: <queue id>: reject: MAIL from localhost[127.0.0.1]: 554 5.7.1 <a@b>: Sender address rejected: Access denied; from=<a@b> proto=SMTP",
		"554 5.7.1 <a@b>: Sender address rejected: Access denied",
		"OK", "OK", "OK", "OK",
		"./smtpd_check: <queue id>: reject: ETRN from localhost[127.0.0.1]: 554 5.7.1 <example.com>: Etrn command rejected: Access denied; from=<a@b> proto=SMTP",
		"554 5.7.1 <example.com>: Etrn command rejected: Access denied",
		"",
	}, "\n")
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}
