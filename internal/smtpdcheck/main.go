package smtpdcheck

import (
	"context"
	"os"
	"strings"

	"moat/internal/cli"
	"moat/internal/config"
	"moat/internal/getopt"
)

// Main is "moat smtpd-check [-c dir] [-n prog] [-o name=value ...]": a test
// tool that reads Postfix's smtpd_check script language on standard input
// and answers as Postfix's smtpd_check program does, from moat's
// restriction code (see the package comment). Without -c it starts from
// moat's built-in defaults, not from main.cf. -n sets the log prefix
// ("./smtpd_check" by default, so output diffs against Postfix's .ref
// files); -o applies a parameter before the script (dns_servers=...).
// Input lines are echoed as ">>> line" unless standard input is a
// terminal, as smtpd_check does.
func Main(env *cli.Env, prog string, args []string) int {
	o := Options{Out: env.Stdout, Echo: !isTerminal(env), Overrides: map[string]string{}}
	var dir string
	opts, rest, err := getopt.Parse(args, "c:n:o:")
	if err != nil {
		env.Errorf(prog, "%v", err)
		return usage(env, prog)
	}
	for _, op := range opts {
		switch op.Flag {
		case 'c':
			dir = op.Arg
		case 'n':
			o.Prog = op.Arg
		case 'o':
			name, value, found := strings.Cut(op.Arg, "=")
			if !found || name == "" {
				env.Errorf(prog, "-o %s: want name=value", op.Arg)
				return usage(env, prog)
			}
			o.Overrides[name] = value
		}
	}
	if len(rest) != 0 {
		return usage(env, prog)
	}
	if dir != "" {
		cfg, err := config.Load(dir)
		if err != nil {
			return env.Fatalf(prog, "%v", err)
		}
		o.Base = cfg
	}
	r := New(o)
	err = r.Run(context.Background(), env.Stdin)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	return 0
}

func usage(env *cli.Env, prog string) int {
	return env.Fatalf(prog, "usage: %s [-c config_dir] [-n log_prefix] [-o name=value ...] <script", prog)
}

// isTerminal reports whether standard input is a character device, when it
// is the process's own.
func isTerminal(env *cli.Env) bool {
	f, ok := env.Stdin.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
