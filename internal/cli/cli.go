// Package cli holds what every moat command shares: its standard streams,
// environment and the choice of configuration directory. Commands take an
// *Env instead of touching os.Stdout and os.Getenv directly so tests can run
// them in-process with captured output.
package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// DefaultConfigDir is where moat looks for main.cf and master.cf when neither
// -c nor MAIL_CONFIG names another directory. It differs from Postfix's
// /etc/postfix so both can be installed side by side; `-c /etc/postfix` (or
// MAIL_CONFIG=/etc/postfix) runs moat on an existing Postfix configuration.
const DefaultConfigDir = "/etc/moat"

// Env is a command's view of its process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// OS returns the Env of the running process.
func OS() *Env {
	return &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// ConfigDir picks the configuration directory as Postfix does: the -c
// argument if given, else $MAIL_CONFIG, else the default.
func (e *Env) ConfigDir(cflag string) string {
	if cflag != "" {
		return cflag
	}
	if e.Getenv != nil {
		if d := e.Getenv("MAIL_CONFIG"); d != "" {
			return d
		}
	}
	return DefaultConfigDir
}

// Warnf prints "prog: warning: ..." to stderr, Postfix's msg_warn format.
func (e *Env) Warnf(prog, format string, args ...any) {
	fmt.Fprintf(e.Stderr, "%s: warning: %s\n", prog, fmt.Sprintf(format, args...))
}

// Errorf prints "prog: error: ..." to stderr, Postfix's msg_error format,
// for problems that do not stop this command but would stop a daemon.
func (e *Env) Errorf(prog, format string, args ...any) {
	fmt.Fprintf(e.Stderr, "%s: error: %s\n", prog, fmt.Sprintf(format, args...))
}

// Fatalf prints "prog: fatal: ..." to stderr and returns exit status 1, as
// Postfix's msg_fatal does, so callers can `return env.Fatalf(...)`.
func (e *Env) Fatalf(prog, format string, args ...any) int {
	fmt.Fprintf(e.Stderr, "%s: fatal: %s\n", prog, fmt.Sprintf(format, args...))
	return 1
}

// FoldWidth is the column postconf -f keeps folded lines under.
const FoldWidth = 80

// FoldWords joins words with single spaces and a newline, as postconf
// prints a parameter. With fold (postconf -f, -Mf, -Pf), a word that would
// end past FoldWidth starts a continuation line indented by four spaces,
// which main.cf and master.cf both read back as the same value.
func FoldWords(words []string, fold bool) string {
	if !fold {
		return strings.Join(words, " ") + "\n"
	}
	var b strings.Builder
	cur := 0
	for i, w := range words {
		switch {
		case i == 0:
			b.WriteString(w)
			cur = len(w)
		case cur+1+len(w) > FoldWidth:
			b.WriteString("\n    " + w)
			cur = 4 + len(w)
		default:
			b.WriteString(" " + w)
			cur += 1 + len(w)
		}
	}
	return b.String() + "\n"
}
