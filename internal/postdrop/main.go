package postdrop

import (
	"fmt"
	"net/netip"
	"os"

	"moat/internal/cli"
	"moat/internal/config"
	"moat/internal/getopt"
)

// netipZero is the absent client address: authorized_submit_users
// matches login names only.
var netipZero netip.Addr

// Main is `postdrop [-rv] [-c config_dir]` (postdrop(1)): it reads a
// maildrop stream on standard input, as sendmail writes it, and drops it
// into maildrop/. setgid says the process runs set-group-ID: then the
// configuration directory must pass TrustedConfigDir unless it is the
// default one.
func Main(env *cli.Env, prog string, args []string, setgid bool) int {
	opts, rest, err := getopt.Parse(args, "c:rv")
	if err != nil || len(rest) > 0 {
		fmt.Fprintf(env.Stderr, "%s: fatal: usage: %s [-c config_dir] [-v]\n", prog, prog)
		return ExUsage
	}
	var cdir string
	for _, o := range opts {
		if o.Flag == 'c' {
			cdir = o.Arg
		}
	}
	dir := env.ConfigDir(cdir)
	if setgid && dir != cli.DefaultConfigDir {
		if err := TrustedConfigDir(dir); err != nil {
			fmt.Fprintf(env.Stderr, "%s: fatal: %v\n", prog, err)
			return Status(err)
		}
	}
	cfg, err := config.Load(dir)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: fatal: %v\n", prog, err)
		return ExConfig
	}
	if _, err := Drop(cfg, Self(), env.Stdin); err != nil {
		fmt.Fprintf(env.Stderr, "%s: fatal: %v\n", prog, err)
		return Status(err)
	}
	return 0
}

// Sanitize replaces the environment of a set-group-ID postdrop with what
// it needs: the configuration directory it was pointed at (then judged by
// TrustedConfigDir) and a fixed PATH, so that no variable a library reads
// later (TZ, LANG, HOME, ...) can steer the privileged process. The Go
// runtime itself honours the kernel's AT_SECURE flag for variables it
// reads at start.
func Sanitize() {
	mc, ok := os.LookupEnv("MAIL_CONFIG")
	os.Clearenv()
	os.Setenv("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
	if ok {
		os.Setenv("MAIL_CONFIG", mc)
	}
}
