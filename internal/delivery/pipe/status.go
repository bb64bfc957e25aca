package pipe

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"moat/internal/delivery"
	"moat/internal/delivery/asuser"
	"moat/internal/queue"
)

// judge turns how the command ended into a verdict: first a damaged
// message (asuser killed the command when its input failed; it may also
// have exited 0 on a truncated copy), then in pipe_command()'s order: time
// limit, signal, an enhanced status code at the start of the output, a
// <sysexits.h> status, any other status; then success.
func (ag *Agent) judge(ctx context.Context, argv0 string, res asuser.CommandResult, readErr error) verdict {
	out := printable(res.Output)
	withOut := func(s string) string {
		if out == "" {
			return s
		}
		return s + ". Command output: " + out
	}
	switch {
	case res.Err != nil:
		// pipe(8)'s child exits with EX_TEMPFAIL when it cannot exec.
		return defer4("4.3.0", "temporary failure. Command output: "+printable(res.Err.Error()))
	case readErr != nil && !res.TimedOut:
		// asuser kills the command when its input fails, so that it
		// never acts on a truncated copy: the signal is ours, the
		// damaged message is the reason.
		return defer4("4.3.0", "error reading message: "+readErr.Error())
	case res.TimedOut && ctx.Err() != nil:
		return defer4("4.3.0", fmt.Sprintf("delivery interrupted: \"%s\"", argv0))
	case res.TimedOut:
		return defer4("4.3.0", withOut(fmt.Sprintf("Command time limit exceeded: \"%s\"", argv0)))
	case res.Signal != 0:
		return defer4("4.3.0", withOut(fmt.Sprintf("Command died with signal %d: \"%s\"", res.Signal, argv0)))
	case res.Status != 0:
		if code, text, ok := leadingDSN(out); ok {
			if code[0] == '4' {
				return defer4(code, text)
			}
			if code[0] == '2' {
				// A failing command that says 2.x.x has not
				// delivered; pipe_command() bounces it with that
				// code, which no DSN reader expects. Keep the detail.
				code = "5" + code[1:]
			}
			return bounce5(code, text)
		}
		if res.Status >= 64 && res.Status <= 78 {
			dsn, temp, text := delivery.Sysexit(res.Status)
			if temp {
				return defer4(dsn, withOut(text))
			}
			return bounce5(dsn, withOut(text))
		}
		// Not a sendmail-style status: pipe_command() bounces (5.3.0).
		return bounce5("5.3.0", withOut(fmt.Sprintf("Command died with status %d: \"%s\"", res.Status, argv0)))
	case readErr != nil:
		return defer4("4.3.0", "error reading message: "+readErr.Error())
	}
	reason := "delivered via " + ag.service + " service"
	if t := strings.TrimRight(out, " "); t != "" {
		reason += " (" + truncate(t, 100) + ")"
	}
	return verdict{state: queue.RcptDelivered, dsn: "2.0.0", reason: reason}
}

// leadingDSN finds "D.S.N text" at the start of the output (pipe(8)
// DIAGNOSTICS: it "takes precedence over the non-zero exit status"), as
// Postfix's dsn_valid() and dsn_split() read it: class 2, 4 or 5, then one
// to three digits twice, then white space or the end.
func leadingDSN(s string) (code, text string, ok bool) {
	if len(s) < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.' {
		return "", "", false
	}
	i := 2
	for part := 0; part < 2; part++ {
		j := i
		for j < len(s) && j-i < 4 && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i || j-i > 3 {
			return "", "", false
		}
		if part == 0 {
			if j == len(s) || s[j] != '.' {
				return "", "", false
			}
			j++
		}
		i = j
	}
	if i < len(s) && s[i] != ' ' {
		return "", "", false
	}
	return s[:i], strings.TrimSpace(s[i:]), true
}

// printable makes command output fit a log line and a bounce, as
// pipe_command() does: tabs and newlines become spaces, and anything else
// that is not printable (control characters, bytes that are not UTF-8)
// becomes '_'.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\t' || r == '\n':
			b.WriteByte(' ')
		case r == utf8.RuneError && n <= 1, r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			b.WriteByte('_')
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// truncate keeps at most n bytes of s without splitting a character, as
// "%.100s" keeps 100 bytes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
