// Package postconf implements the postconf command (postconf(1)): it shows
// main.cf parameters as Postfix's postconf prints them, so admins' scripts
// and habits keep working, and hands editing (-e, -X, -#) and master.cf
// display (-M, -F, -P) to internal/confedit and internal/mastercf.
package postconf

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"moat/internal/cli"
	"moat/internal/confedit"
	"moat/internal/config"
	"moat/internal/getopt"
	"moat/internal/maps"
	"moat/internal/mastercf"
)

// usage is Postfix's postconf usage line, so a mistyped flag reads the same.
const usage = "usage: postconf [-a (server SASL types)] [-A (client SASL types)] [-b (bounce templates)] [-c config_dir] [-c param_class] [-d (parameter defaults)] [-e (edit configuration)] [-f (fold lines)] [-F (master.cf fields)] [-h (no names)] [-H (no values)] [-l (lock types)] [-m (map types)] [-M (master.cf)] [-n (non-default parameters)] [-o name=value (override parameter value)] [-p (main.cf, default)] [-P (master.cf parameters)] [-t (bounce templates)] [-T compile-version|run-version|public-key-algorithms] [-v (verbose)] [-x (expand parameter values)] [-X (exclude)] [-# (comment-out)] [name...]"

// options are the parsed command-line flags.
type options struct {
	cdir                                   string
	defaults, nonDefault, fold, noName     bool
	namesOnly, expand, edit, exclude, hash bool
	master, fields, svcParams, mapTypes    bool
	overrides                              map[string]string
}

// Main runs postconf with args (without the program name) and returns the
// exit status.
func Main(env *cli.Env, prog string, args []string) int {
	parsed, names, err := getopt.Parse(args, "c:dDefFhHmMno:pPvxX#")
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", prog, err)
		return env.Fatalf(prog, "%s", usage)
	}
	o := options{overrides: map[string]string{}}
	for _, p := range parsed {
		switch p.Flag {
		case 'c':
			o.cdir = p.Arg
		case 'd':
			o.defaults = true
		case 'n':
			o.nonDefault = true
		case 'e':
			o.edit = true
		case 'X':
			o.exclude = true
		case '#':
			o.hash = true
		case 'f':
			o.fold = true
		case 'F':
			o.fields = true
		case 'h':
			o.noName = true
		case 'H':
			o.namesOnly = true
		case 'm':
			o.mapTypes = true
		case 'M':
			o.master = true
		case 'P':
			o.svcParams = true
		case 'x':
			o.expand = true
		case 'o':
			n, v, ok := strings.Cut(p.Arg, "=")
			if !ok {
				return env.Fatalf(prog, "invalid '-o %s' option: missing '='", p.Arg)
			}
			o.overrides[strings.TrimSpace(n)] = strings.TrimSpace(v)
		case 'v', 'p', 'D':
			// -v only makes Postfix log more; -p is the default mode.
		}
	}
	if o.defaults && o.nonDefault {
		return env.Fatalf(prog, "specify one of -d -n")
	}
	dir := env.ConfigDir(o.cdir)
	explicitDir := o.cdir != "" || env.Getenv != nil && env.Getenv("MAIL_CONFIG") != ""

	switch {
	case o.mapTypes:
		types := append([]string(nil), maps.Types...)
		sort.Strings(types)
		for _, t := range types {
			fmt.Fprintln(env.Stdout, t)
		}
		return 0
	case o.edit || o.exclude || o.hash:
		return edit(env, prog, dir, o, names)
	case o.master || o.fields || o.svcParams:
		return showMaster(env, prog, dir, o, names)
	}
	return showMain(env, prog, dir, explicitDir, o, names)
}

// edit hands -e, -X and -# to confedit, which rewrites main.cf in place.
func edit(env *cli.Env, prog, dir string, o options, names []string) int {
	path := filepath.Join(dir, "main.cf")
	var err error
	switch {
	case o.edit:
		if len(names) == 0 {
			return env.Fatalf(prog, "-e requires name=value argument")
		}
		err = confedit.Set(path, names)
	case o.exclude:
		if len(names) == 0 {
			return env.Fatalf(prog, "-X requires parameter name")
		}
		err = confedit.Remove(path, names)
	default:
		if len(names) == 0 {
			return env.Fatalf(prog, "-# requires parameter name")
		}
		err = confedit.Comment(path, names)
	}
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	return 0
}

// showMaster hands -M, -F and -P to mastercf.
func showMaster(env *cli.Env, prog, dir string, o options, filters []string) int {
	path := filepath.Join(dir, "master.cf")
	f, err := mastercf.Load(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return env.Fatalf(prog, "open %s: No such file or directory", path)
		}
		return env.Fatalf(prog, "%v", err)
	}
	var kind byte
	switch {
	case o.master:
		kind, err = 'M', f.WriteM(env.Stdout, o.fold, filters)
	case o.fields:
		kind, err = 'F', f.WriteFields(env.Stdout, o.fold, filters)
	default:
		kind, err = 'P', f.WriteParams(env.Stdout, o.fold, filters)
	}
	if err != nil {
		return env.Fatalf(prog, "%v", err)
	}
	// Postfix reports filters that selected nothing after the output.
	for _, a := range f.Unmatched(kind, filters) {
		env.Warnf(prog, "unmatched request: %q", a)
	}
	return 0
}

// readMaster adds what master.cf implies to c: per-transport parameters and
// the names -o settings make "used". A missing file gives Postfix's
// warning; a master.cf moat cannot read is reported and ignored here, since
// postconf's main.cf view does not depend on it.
func readMaster(env *cli.Env, prog, dir string, c *config.Config) ([]string, []mastercf.Override) {
	path := filepath.Join(dir, "master.cf")
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			env.Warnf(prog, "open %s: No such file or directory", path)
		} else {
			env.Warnf(prog, "%v", err)
		}
		return nil, nil
	}
	f, err := mastercf.Load(path)
	if err != nil {
		// moat's master would refuse this file: an error, though the
		// main.cf view is still printed.
		env.Errorf(prog, "%v", err)
		return nil, nil
	}
	var used []string
	var ovs []mastercf.Override
	for _, s := range f.Services {
		c.AddServiceParams(s.Name, s.Command)
		for _, ov := range s.Overrides {
			used = append(used, ov.Name)
			ovs = append(ovs, ov)
			config.References(ov.Value, func(n string) { used = append(used, n) })
		}
	}
	return used, ovs
}

// unusedOverrides warns, as Postfix's postconf does, about master.cf "-o"
// settings of names that are neither parameters nor defined in main.cf nor
// referenced as $name anywhere.
func unusedOverrides(env *cli.Env, prog, dir string, c *config.Config, ovs []mastercf.Override) {
	refs := map[string]bool{}
	for _, e := range c.Entries() {
		if !c.IsRaw(e.Name) {
			config.References(e.Value, func(n string) { refs[n] = true })
		}
	}
	for _, ov := range ovs {
		config.References(ov.Value, func(n string) { refs[n] = true })
	}
	seen := map[string]bool{}
	for _, ov := range ovs {
		if _, inMain := c.Entry(ov.Name); c.IsBuiltin(ov.Name) || inMain || refs[ov.Name] || seen[ov.Name+"="+ov.Value] {
			continue
		}
		seen[ov.Name+"="+ov.Value] = true
		env.Warnf(prog, "%s: unused parameter: %s=%s", filepath.Join(dir, "master.cf"), ov.Name, ov.Value)
	}
}

// showMain prints main.cf parameters: all of them, the non-default ones
// (-n), the defaults (-d) or the named ones.
func showMain(env *cli.Env, prog, dir string, explicitDir bool, o options, names []string) int {
	var c *config.Config
	if o.defaults {
		c = config.Empty(dir)
	} else {
		var err error
		c, err = config.Open(dir)
		if err != nil {
			return env.Fatalf(prog, "%v", err)
		}
		if explicitDir {
			c.SetProgramValue("config_directory", dir)
			if e, ok := c.Entry("config_directory"); ok {
				env.Warnf(prog, "%s, line %d: overriding earlier entry: config_directory=%s", c.Path, e.Line, dir)
			}
		}
	}
	c.ProcessName = prog
	masterUsed, overrides := readMaster(env, prog, dir, c)
	if len(o.overrides) > 0 {
		c = c.WithOverrides(o.overrides)
	}
	if !o.defaults {
		for _, w := range c.Warnings() {
			if !strings.Contains(w, ": unused parameter: ") {
				env.Warnf(prog, "%s", w)
			}
		}
		unusedOverrides(env, prog, dir, c, overrides)
		for _, e := range c.Unused(masterUsed) {
			env.Warnf(prog, "%s: unused parameter: %s=%s", c.Path, e.Name, e.Value)
		}
		// Problems that make moat's daemons refuse the file: shown as
		// errors, while the parameters are still printed so the admin
		// can see and fix them.
		if err := c.Check(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				env.Errorf(prog, "%s", line)
			}
		}
	}
	if !o.defaults {
		for _, e := range c.Entries() {
			if c.IsRaw(e.Name) {
				continue
			}
			// Postfix's postconf scans every main.cf value this way
			// before printing anything; a bad one is fatal.
			x := &config.Expander{Refs: func(string) {}, Lookup: c.Raw, Warn: func(m string) { env.Warnf(prog, "%s", m) }}
			if _, st := x.Expand(e.Value); st&config.StatError != 0 {
				return env.Fatalf(prog, "macro processing error")
			}
		}
	}
	used := c.Used(masterUsed)
	known := func(name string) bool {
		if c.IsBuiltin(name) {
			return true
		}
		if o.defaults {
			return false
		}
		_, set := c.Entry(name)
		return set && used[name]
	}
	isSet := func(name string) bool {
		if _, ok := c.Entry(name); ok {
			return true
		}
		if _, ok := o.overrides[name]; ok && !o.defaults {
			return true
		}
		return name == "config_directory" && explicitDir
	}
	var list []string
	if len(names) > 0 {
		for _, n := range names {
			if !known(n) {
				env.Warnf(prog, "%s: unknown parameter", n)
				continue
			}
			if o.nonDefault && !isSet(n) {
				continue
			}
			list = append(list, n)
		}
	} else {
		seen := map[string]bool{}
		add := func(n string) {
			if !seen[n] {
				seen[n] = true
				list = append(list, n)
			}
		}
		if !o.nonDefault {
			for _, n := range c.BuiltinNames() {
				add(n)
			}
		}
		if !o.defaults {
			for _, e := range c.Entries() {
				if used[e.Name] {
					add(e.Name)
				}
			}
			if explicitDir {
				add("config_directory")
			}
			// -o name=value counts as set, as in Postfix.
			for n := range o.overrides {
				if c.IsBuiltin(n) {
					add(n)
				}
			}
		}
		sort.Strings(list)
	}
	for _, n := range list {
		var v string
		if o.defaults {
			v, _ = c.Default(n)
		} else {
			v, _ = c.Raw(n)
		}
		if o.expand && !c.IsRaw(n) {
			x, err := c.Expand(v)
			if err != nil {
				env.Warnf(prog, "%v", err)
				return env.Fatalf(prog, "macro processing error")
			}
			v = x
		}
		printParam(env.Stdout, n, v, o)
	}
	return 0
}

// printParam prints "name = value" (or just the value with -h, or just the
// name with -H) with whitespace runs collapsed, as Postfix's postconf does,
// folding at cli.FoldWidth columns with -f.
func printParam(w io.Writer, name, value string, o options) {
	words := strings.Fields(value)
	var line []string
	switch {
	case o.namesOnly:
		line = []string{name}
	case o.noName:
		line = words
	default:
		line = append([]string{name, "="}, words...)
	}
	io.WriteString(w, cli.FoldWords(line, o.fold))
}
