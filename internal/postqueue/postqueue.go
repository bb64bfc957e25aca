// Package postqueue implements postqueue(1) and mailq: listing the mail
// queue in Postfix's formats (-p, -j) and asking the scheduler to retry
// deferred mail (-f, -i, -s). Listing reads the queue files directly
// through internal/queue, where Postfix asks its showq(8) daemon; flushing
// leaves a request file for the scheduler (see WriteRequest).
package postqueue

import (
	"fmt"
	"time"

	"moat/internal/cli"
	"moat/internal/config"
	"moat/internal/getopt"
	"moat/internal/queue"
)

// usage is Postfix's postqueue usage text, so a mistyped flag reads the same.
const usage = "usage: postqueue -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site"

// downMsg is what Postfix's postqueue says when the flush trigger cannot be
// delivered; moat says it when nothing has set up the trigger directory.
const downMsg = "Cannot flush mail queue - mail system is down"

// Main runs postqueue with args (without the program name) and returns the
// exit status. Started as "mailq" it lists the queue as Mailq does, so the
// command table may map both names to Main.
func Main(env *cli.Env, prog string, args []string) int {
	if prog == "mailq" {
		return Mailq(env, prog, args)
	}
	return run(env, prog, args, caller{who: Self(), defaultDir: cli.DefaultConfigDir})
}

// Mailq runs mailq, Sendmail's queue listing, which is postqueue -p
// (postqueue(1), "mailq"). A mode flag, if given, still wins.
func Mailq(env *cli.Env, prog string, args []string) int {
	return run(env, prog, args, caller{who: Self(), defaultDir: cli.DefaultConfigDir, mode: 'p'})
}

// caller is what run needs to know beyond the command line: who runs it,
// which configuration directory needs no privilege, and the mode when no
// flag picks one. Tests set them to exercise the access checks.
type caller struct {
	who        Identity
	defaultDir string
	mode       byte
}

func run(env *cli.Env, prog string, args []string, c caller) int {
	who, mode := c.who, c.mode
	parsed, rest, err := getopt.Parse(args, "c:fi:jps:v")
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
		return env.Fatalf(prog, "%s", usage)
	}
	if modeSet(parsed) > 1 {
		return env.Fatalf(prog, "%s", usage)
	}
	var cdir, arg string
	for _, p := range parsed {
		switch p.Flag {
		case 'c':
			cdir = p.Arg
		case 'f', 'j', 'p', 'i', 's':
			mode, arg = p.Flag, p.Arg
		case 'v':
			// Postfix's -v only makes logging verbose.
		}
	}
	if mode == 0 || len(rest) > 0 {
		return env.Fatalf(prog, "%s", usage)
	}
	dir := env.ConfigDir(cdir)
	if who.UID != 0 && dir != c.defaultDir {
		// The configuration chooses the queue and the access lists; an
		// unprivileged user must not supply their own (Postfix limits it
		// to alternate_config_directories).
		return env.Fatalf(prog, "%s: only the super-user may use another configuration directory", dir)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	switch mode {
	case 'p', 'j':
		return list(env, prog, cfg, who, mode)
	}
	ok, err := Authorized(cfg, "authorized_flush_users", who)
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	if !ok {
		return env.Fatalf(prog, "User %s(%d) is not allowed to flush the mail queue", who.Name, who.UID)
	}
	var r Request
	switch mode {
	case 'f':
		r = Request{Kind: FlushAll}
	case 'i':
		if !queue.ValidID(arg) {
			return env.Fatalf(prog, "invalid queue ID: %s", arg)
		}
		r = Request{Kind: FlushID, Arg: arg}
	case 's':
		if arg == "" {
			return env.Fatalf(prog, "%s", usage)
		}
		r = Request{Kind: FlushSite, Arg: arg}
	}
	if err := WriteRequest(cfg.Get("queue_directory"), r); err != nil {
		env.Warnf(prog, "%v", err)
		return env.Fatalf(prog, "%s", downMsg)
	}
	return 0
}

// modeSet counts the mode flags on the command line: postqueue takes one.
func modeSet(parsed []getopt.Option) int {
	n := 0
	for _, p := range parsed {
		switch p.Flag {
		case 'f', 'i', 'j', 'p', 's':
			n++
		}
	}
	return n
}

// list implements -p and -j.
func list(env *cli.Env, prog string, cfg *config.Config, who Identity, mode byte) int {
	ok, err := Authorized(cfg, "authorized_mailq_users", who)
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	if !ok {
		return env.Fatalf(prog, "User %s(%d) is not allowed to view the mail queue", who.Name, who.UID)
	}
	q, err := openConfigured(cfg)
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	infos, err := Scan(q, func(format string, args ...any) { env.Warnf(prog, format, args...) })
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	f := Format{EmptySender: cfg.Get("empty_address_recipient"), Location: time.Local}
	if mode == 'j' {
		err = WriteJSON(env.Stdout, infos, f)
	} else {
		err = WriteMailq(env.Stdout, infos, f)
	}
	if err != nil {
		return env.Fatalf(prog, "output write error: %v", err)
	}
	return 0
}
