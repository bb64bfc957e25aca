// Command moat is a mail transfer agent that speaks Postfix's configuration
// language. One binary serves every role: `moat VERB ARGS...`, or, when
// started through a link named like a Postfix command (postconf, postmap,
// postalias, ...), that command.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"moat/internal/cli"
	"moat/internal/delivery/asuser"
	"moat/internal/master"
	"moat/internal/postalias"
	"moat/internal/postcat"
	"moat/internal/postconf"
	"moat/internal/postdrop"
	"moat/internal/postfix"
	"moat/internal/postmap"
	"moat/internal/postqueue"
	"moat/internal/postsuper"
	"moat/internal/saslpasswd"
	"moat/internal/sendmail"
	"moat/internal/smtpdcheck"
)

// command is the entry point of one verb: it gets the program name to print
// in messages and the arguments after it, and returns the exit status.
type command func(env *cli.Env, prog string, args []string) int

var commands = map[string]command{
	"postconf":    postconf.Main,
	"postmap":     postmap.Main,
	"postalias":   postalias.Main,
	"newaliases":  postalias.Newaliases,
	"postqueue":   postqueue.Main,
	"mailq":       postqueue.Mailq,
	"postsuper":   postsuper.Main,
	"postcat":     postcat.Main,
	"postfix":     postfix.Main,
	"sendmail":    sendmail.Main,
	"smtpd-check": smtpdcheck.Main, // test tool: Postfix's smtpd_check scripts
	"postdrop":    postdropMain,
	"saslpasswd":  saslpasswd.Main, // moat's SASL users (docs/SASL.md)
}

// postdropMain is postdrop run without privilege (moat postdrop, or a
// link): it may write maildrop/ only if the caller can anyway.
func postdropMain(env *cli.Env, prog string, args []string) int {
	return postdrop.Main(env, prog, args, false)
}

func main() {
	if os.Getegid() != os.Getgid() || os.Geteuid() != os.Getuid() {
		// The set-group-ID copy (make install: /usr/sbin/postdrop, group
		// setgid_group) is postdrop and nothing else, whatever its name
		// or arguments, with an environment cut down to what postdrop
		// reads: otherwise any user could run any moat command with the
		// group that writes maildrop/.
		postdrop.Sanitize()
		os.Exit(postdrop.Main(cli.OS(), "postdrop", os.Args[1:], true))
	}
	os.Exit(run(cli.OS(), os.Args))
}

func run(env *cli.Env, argv []string) int {
	name := filepath.Base(argv[0])
	if cmd, ok := commands[name]; ok {
		return cmd(env, name, argv[1:])
	}
	if len(argv) < 2 {
		usage(env)
		return 1
	}
	verb := argv[1]
	switch verb {
	case master.ChildVerb:
		// Hidden: the master runs its services through it.
		return postfix.Child(env, verb, argv[2:])
	case asuser.ChildVerb:
		// Hidden: one mailbox delivery with a recipient's credentials.
		return asuser.ChildMain(env, verb, argv[2:])
	}
	cmd, ok := commands[verb]
	if !ok {
		fmt.Fprintf(env.Stderr, "moat: unknown command %q\n", verb)
		usage(env)
		return 1
	}
	return cmd(env, verb, argv[2:])
}

func usage(env *cli.Env) {
	var verbs []string
	for v := range commands {
		verbs = append(verbs, v)
	}
	sort.Strings(verbs)
	fmt.Fprintf(env.Stderr, "usage: moat COMMAND [ARGS...]\ncommands: %s\n", strings.Join(verbs, " "))
}
