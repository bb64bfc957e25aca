// Package postfix is moat's `postfix` command (postfix(1)): the admin's
// front end to the mail system. It implements `check`, the pre-flight an
// admin runs before start or reload, and the lifecycle: `start` (check,
// then a detached master, returning once it is ready), `start-fg` (the
// master in the foreground, for systemd Type=simple and containers),
// `stop`, `status` and `reload`, with postfix-script's messages
// ("the Postfix mail system is running: PID: N"), which admins and scripts
// grep. The other subcommands (abort, flush, set-permissions, ...) answer
// that they are not available yet rather than pretending.
//
// Decisions where moat's lifecycle differs from Postfix's:
//   - `start-fg` does not run `postfix check` (Postfix's does): the master
//     itself refuses what a daemon would refuse, and a development machine
//     without a postfix account can still `make run`;
//   - `stop` waits for the master (bounded) and reports "waiting for the
//     Postfix mail system to terminate" each second, as Postfix 3.7's
//     postfix-script does, but only after the master's own drain bound
//     (10 s) plus a margin does it stop it "with force" (SIGKILL);
//   - `reload` does not run `postsuper active` first: moat's queue manager
//     requeues active/ itself when it starts;
//   - the script's messages go to the mail log only when there is a real
//     sink (maillog_file or /dev/log), never a second time to stderr.
//
// Decisions where moat's check differs from Postfix's:
//   - check creates nothing (Postfix creates missing queue directories):
//     a missing queue subdirectory is a warning, since `postfix start` will
//     create it with the right owner and mode, and a missing
//     queue_directory is an error;
//   - a relative queue_directory or data_directory is resolved against the
//     current directory, as Postfix's master resolves it by chdir(), so
//     examples/dev works from the repository root;
//   - only tables named by parameters that main.cf or a master.cf -o sets
//     are opened (with everything their values reference): Postfix's own
//     defaults name tables such as nis:mail.aliases that only delivery
//     agents moat does not have yet would open;
//   - checks Postfix leaves to the admin are added as warnings (mail_owner
//     with a login shell) or errors (tables moat cannot read, pcre patterns
//     RE2 cannot run).
package postfix

import (
	"fmt"
	"os"

	"moat/internal/cli"
	"moat/internal/getopt"
)

// usage is postfix(1)'s synopsis, printed for a bad command line.
const usage = "usage: postfix [-c config_dir] [-Dv] command"

// isLifecycle reports whether cmd is one of postfix(1)'s other subcommands
// ("COMMANDS"), which moat will implement with the master; until then each
// is refused by name so a script learns that the command exists but does
// nothing yet.
func isLifecycle(cmd string) bool {
	switch cmd {
	case "start", "start-fg", "stop", "abort", "flush", "reload", "status",
		"set-permissions", "upgrade-configuration", "logrotate", "post-install",
		"tls", "register", "stream", "wait":
		return true
	}
	return false
}

// Main runs the postfix command (postfix(1)): flags -c DIR, -v and -D (the
// latter only affects daemons started under a debugger, so check ignores
// it), then one subcommand. It returns the exit status.
func Main(env *cli.Env, prog string, args []string) int {
	parsed, rest, err := getopt.Parse(args, "c:Dv")
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
		return env.Fatalf(prog, "%s", usage)
	}
	var cdir string
	for _, p := range parsed {
		if p.Flag == 'c' {
			cdir = p.Arg
		}
	}
	if len(rest) == 0 {
		return env.Fatalf(prog, "%s", usage)
	}
	cmd := rest[0]
	switch {
	case cmd == "check":
		if len(rest) > 1 {
			return env.Fatalf(prog, "%s", usage)
		}
		cwd, err := os.Getwd()
		if err != nil {
			return env.Fatalf(prog, "getcwd: %v", err)
		}
		probs := Check(env.ConfigDir(cdir), Options{Dir: cwd})
		return Report(env, prog, probs)
	case cmd == "start" || cmd == "start-fg" || cmd == "stop" || cmd == "status" || cmd == "reload":
		if len(rest) > 1 {
			return env.Fatalf(prog, "%s", usage)
		}
		return lifecycle(env, prog, cdir, cmd)
	case isLifecycle(cmd):
		return env.Fatalf(prog, "%s: not available yet in this version of moat", cmd)
	}
	// postfix-script's words for a command it does not know.
	fmt.Fprintf(env.Stderr, "%s/postfix-script: fatal: unknown command: '%s'. Usage: postfix start (or stop, reload, abort, flush, check, status, set-permissions, upgrade-configuration)\n", prog, cmd)
	return 1
}

// Report prints problems in Postfix's words, warnings as postfix-script
// prints them and errors as postfix's fatal lines, and returns the exit
// status: 1 when any problem is an error, since a daemon would refuse it.
func Report(env *cli.Env, prog string, probs []Problem) int {
	status := 0
	for _, p := range probs {
		if p.Fatal {
			fmt.Fprintf(env.Stderr, "%s: fatal: %s\n", prog, p.Msg)
			status = 1
		} else {
			fmt.Fprintf(env.Stderr, "%s/postfix-script: warning: %s\n", prog, p.Msg)
		}
	}
	return status
}
