package pipe

import (
	"reflect"
	"strings"
	"testing"
)

func vars() map[string]string {
	return map[string]string{
		"sender": "s@x.example", "nexthop": "Next.Example", "size": "42",
		"client_address": "192.0.2.1", "client_helo": "helo.example",
		"client_hostname": "c.example", "client_port": "", "client_protocol": "ESMTP",
		"sasl_method": "", "sasl_username": "u", "sasl_sender": "", "queue_id": "ABC123",
	}
}

func TestExpandArgv(t *testing.T) {
	sp := splitter{delim: "+", doubleBounce: "double-bounce", ownerRequest: true}
	rcpts := []rcptInfo{{address: "Joe+Ext@Example.COM", orig: "alias@Example.COM"}, {address: "ann@b.example"}}
	for _, tc := range []struct {
		argv  string
		flags int
		want  []string
	}{
		{"/usr/bin/maildrop -d ${recipient}", 0,
			[]string{"/usr/bin/maildrop", "-d", "Joe+Ext@Example.COM", "ann@b.example"}},
		{"/usr/bin/maildrop -d ${recipient}", flagFoldHost | flagFoldUser,
			[]string{"/usr/bin/maildrop", "-d", "joe+ext@example.com", "ann@b.example"}},
		{"x $recipient", flagFoldHost, []string{"x", "Joe+Ext@example.com", "ann@b.example"}},
		{"x $recipient", flagFoldUser, []string{"x", "joe+ext@Example.COM", "ann@b.example"}},
		{"x -m ${extension} ${user} $(mailbox) ${domain}", 0,
			[]string{"x", "-m", "Ext", "", "Joe", "ann", "Joe+Ext", "ann", "Example.COM", "b.example"}},
		{"x ${original_recipient}", 0, []string{"x", "alias@Example.COM", "ann@b.example"}},
		{"uux -r -a$sender - $nexthop!rmail ($recipient)", flagFoldHost,
			[]string{"uux", "-r", "-as@x.example", "-", "next.example!rmail", "(Joe+Ext@example.com)", "(ann@b.example)"}},
		{"q $$5 ${queue_id} ${size} ${client_address} ${client_helo} ${client_hostname} ${client_protocol} ${sasl_username}", 0,
			[]string{"q", "$5", "ABC123", "42", "192.0.2.1", "helo.example", "c.example", "ESMTP", "u"}},
		{"x --to=${user}@${domain}", 0, []string{"x", "--to=Joe@Example.COM", "--to=ann@b.example"}},
	} {
		ts, err := compileArgv(strings.Fields(tc.argv))
		if err != nil {
			t.Fatalf("%q: %v", tc.argv, err)
		}
		v := vars()
		if tc.flags&flagFoldHost != 0 {
			v["nexthop"] = foldCase(v["nexthop"])
		}
		got := expandArgv(ts, v, rcpts, tc.flags, sp)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q flags %x:\n got %q\nwant %q", tc.argv, tc.flags, got, tc.want)
		}
	}
}

func TestExpandQuoteAndSplit(t *testing.T) {
	sp := splitter{delim: "-+", doubleBounce: "double-bounce", ownerRequest: true}
	rcpts := []rcptInfo{
		{address: "John Doe@x.example"}, {address: "owner-list@x.example"},
		{address: "list-request@x.example"}, {address: "Postmaster+a@x.example"},
		{address: "+cyrus@x.example"}, {address: "@x.example"}, {address: "noat"},
	}
	ts, err := compileArgv([]string{"$recipient", "$user", "${extension}"})
	if err != nil {
		t.Fatal(err)
	}
	got := expandArgv(ts, vars(), rcpts, flagQuote, sp)
	want := []string{
		`"John Doe"@x.example`, `owner-list@x.example`, `list-request@x.example`, `Postmaster+a@x.example`,
		`+cyrus@x.example`, `""@x.example`, `noat`,
		// $user: "+cyrus" is not split (the user would be empty); the
		// empty local part of "@x.example" drops that argument.
		"John Doe", "owner-list", "list-request", "Postmaster", "+cyrus", "noat",
		"", "", "", "a", "", "", "",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestCompileArgErrors(t *testing.T) {
	for _, a := range []string{"$", "x$", "${recipient", "$(user", "${bogus}", "$bogus", "${sender?x}", "$-", "${}"} {
		if _, err := compileArg(a); err == nil {
			t.Errorf("compileArg(%q) accepted", a)
		}
	}
}

func TestQuoteLocal(t *testing.T) {
	for in, want := range map[string]string{
		"a@b": "a@b", "a.b@c": "a.b@c", "a..b@c": `"a..b"@c`, `a"b@c`: `"a\"b"@c`,
		`a\b@c`: `"a\\b"@c`, "é@c": "é@c", ".a@c": `".a"@c`, "a b": `"a b"`, "x@y@z": `"x@y"@z`,
	} {
		if got := quoteLocal(in); got != want {
			t.Errorf("quoteLocal(%q) = %q, want %q", in, got, want)
		}
	}
}
