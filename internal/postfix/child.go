package postfix

import (
	"fmt"
	"strconv"
	"strings"

	"moat/internal/cli"
	"moat/internal/master"
)

// Child is the hidden `moat master-child` verb: one master.cf service
// run by the master as its child (master(8) execs the service's command;
// moat re-executes itself). Its arguments come from the master, not an
// admin: -c DIR -d CWD -s NAME/TYPE -g GEN -u y|n -j y|n [-i INTERNAL]
// [-l LISTENER]... [-p ROLE=SOCKET]... [-r ROLE] [-e] [-S SYSLOG].
func Child(env *cli.Env, prog string, args []string) int {
	opts, err := parseChildArgs(args)
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	opts.Servers, opts.Roles = servers(), roles()
	if err := master.RunChild(opts); err != nil {
		env.Errorf(prog, "%v", err)
		return 1
	}
	return 0
}

// parseChildArgs reads the master's command line for a child.
func parseChildArgs(args []string) (master.ChildOptions, error) {
	var opts master.ChildOptions
	for i := 0; i < len(args); i++ {
		flag := args[i]
		if flag == "-e" {
			opts.Stderr = true
			continue
		}
		if i+1 >= len(args) {
			return opts, fmt.Errorf("option %q needs a value", flag)
		}
		i++
		v := args[i]
		switch flag {
		case "-c":
			opts.ConfigDir = v
		case "-d":
			opts.Dir = v
		case "-s":
			opts.Service = v
		case "-g":
			n, err := strconv.Atoi(v)
			if err != nil {
				return opts, fmt.Errorf("-g %q: not a generation number", v)
			}
			opts.Gen = n
		case "-u":
			opts.Unpriv = v == "y"
		case "-j":
			opts.Jail = v == "y"
		case "-i":
			opts.Internal = v
		case "-l":
			opts.Listen = append(opts.Listen, v)
		case "-r":
			opts.Role = v
		case "-S":
			opts.SyslogPath = v
		case "-p":
			name, path, ok := strings.Cut(v, "=")
			if !ok || name == "" || path == "" {
				return opts, fmt.Errorf("-p %q: want ROLE=SOCKET", v)
			}
			if opts.Sockets == nil {
				opts.Sockets = map[string]string{}
			}
			opts.Sockets[name] = path
		default:
			return opts, fmt.Errorf("unknown option %q (this verb is run by the master only)", flag)
		}
	}
	if opts.ConfigDir == "" || opts.Service == "" {
		return opts, fmt.Errorf("usage: moat %s -c DIR -s SERVICE ... (run by the master only)", master.ChildVerb)
	}
	return opts, nil
}
