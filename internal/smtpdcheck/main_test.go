package smtpdcheck

import (
	"bytes"
	"strings"
	"testing"

	"moat/internal/cli"
)

// TestMainVerb runs the verb's entry point with its options: -n changes the
// log prefix, -o applies a parameter before the script, input from a
// non-terminal is echoed.
func TestMainVerb(t *testing.T) {
	var out, errb bytes.Buffer
	env := &cli.Env{
		Stdin:  strings.NewReader("helo_restrictions reject\nhelo x.example\n"),
		Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" },
	}
	if rc := Main(env, "smtpd-check", []string{"-n", "moat", "-o", "smtpd_delay_reject=no", "-o", "reject_code=550"}); rc != 0 {
		t.Fatalf("exit %d: %s", rc, errb.String())
	}
	want := ">>> helo_restrictions reject\nOK\n>>> helo x.example\n" +
		"moat: <queue id>: reject: HELO from localhost[127.0.0.1]: 550 5.7.1 <x.example>: Helo command rejected: Access denied; proto=SMTP helo=<x.example>\n" +
		"550 5.7.1 <x.example>: Helo command rejected: Access denied\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	for _, args := range [][]string{{"-o", "novalue"}, {"extra"}, {"-x"}} {
		errb.Reset()
		if rc := Main(env, "smtpd-check", args); rc == 0 {
			t.Errorf("%q: exit 0, want usage error", args)
		}
		if !strings.Contains(errb.String(), "usage:") {
			t.Errorf("%q: %q, want a usage message", args, errb.String())
		}
	}
}
