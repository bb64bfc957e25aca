package smtpd

import (
	"testing"
)

func TestForbiddenCommands(t *testing.T) {
	h := newHarness(t, nil, nil, "")
	c := h.greeted()
	c.cmd("noop", "250 2.0.0 Ok") // lower case is not "Bogus"
	c.cmd(`{"json": 1}`, "221 2.7.0 Error: I can break rules, too. Goodbye.")
	c.closed()
	h.waitLog(`warning: non-SMTP command from ` + h.client + `: {"json": 1}`)
	for _, line := range []string{"POST /x HTTP/1.1", "Subject: hi", "1234"} {
		c = h.greeted()
		c.cmd(line, "221 2.7.0")
	}
	h2 := newHarness(t, map[string]string{"smtpd_forbidden_commands": "connect, pcre:{{/^X-/ no}, {/^a{2}b/ no}}"}, nil, "")
	c = h2.greeted()
	c.cmd("GET /", "500 5.5.2 Error: command not recognized")
	c.cmd("X-FOO", "221 2.7.0")
	c = h2.greeted()
	c.cmd("AAB", "221 2.7.0")
}
